from tests.worker.conftest import wsettings  # noqa: F401  (the worker tests' settings fixture)
