"""A TCP forwarder run as its own process: `python tests/tcp_proxy.py LISTEN_PORT TARGET_PORT
[BYTES_PER_SECOND]`. Tests kill and restart it to make a server vanish and come back
(moto keeps its data in memory: killing moto itself would lose the bucket), and its
throttle makes an upload slow enough to be cut in the middle."""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float) -> None:
    chunk = 16384 if not rate else max(1024, int(rate / 20))
    try:
        while data := await reader.read(chunk):
            writer.write(data)
            await writer.drain()
            if rate:
                await asyncio.sleep(len(data) / rate)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _main(listen: int, target: int, rate: float) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, server_writer, rate),
                             _pipe(server_reader, client_writer, 0))

    server = await asyncio.start_server(handle, "127.0.0.1", listen, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0))
