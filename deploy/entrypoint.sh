#!/bin/sh
# Container start: wait until the database answers (by migrating it), then run the bot.
# The same two commands as outside a container: `adherence-bot db upgrade`, `adherence-bot run`.
set -eu

tries="${DB_WAIT_TRIES:-30}"
pause="${DB_WAIT_SECONDS:-2}"

# While this script is PID 1 the kernel ignores signals it has no handler for, so without
# this trap `docker stop` would wait out its timeout during the wait below.
trap 'exit 143' TERM INT

attempt=1
while :; do
    status=0
    adherence-bot db upgrade || status=$?
    if [ "$status" -eq 0 ]; then
        break
    fi
    if [ "$status" -eq 2 ]; then
        # Exit code 2: a setting must be fixed first (its message is above); waiting cannot help.
        exit 2
    fi
    if [ "$attempt" -ge "$tries" ]; then
        echo "entrypoint: the database did not answer after $tries tries; giving up" >&2
        exit "$status"
    fi
    echo "entrypoint: database not ready (try $attempt of $tries); retrying in ${pause}s" >&2
    attempt=$((attempt + 1))
    sleep "$pause"
done

# exec: the bot becomes PID 1 and receives `docker stop`'s SIGTERM itself.
exec adherence-bot run "$@"
