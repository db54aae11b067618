"""Treasure Data's v3 job API (`/v3/job/*`), served to the unchanged td-client.

auth (TD1 or Bearer tokens), forms (multipart/urlencoded/JSON bodies), paths (the client's
leading `//`), query (a TD query -> NQL), wire (status/date mapping, job answers), routes.
"""
