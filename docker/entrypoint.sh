#!/bin/sh
# Bring the schema up to date, then replace this shell with the server so it
# receives SIGTERM directly and shuts down gracefully. Extra arguments go to serve.
set -e
helpdesk migrate
exec helpdesk serve --host 0.0.0.0 "$@"
