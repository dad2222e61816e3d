# shellcheck shell=sh
# The flush that qmail-send-systemd's network hooks share, sourced (never executed) by
# packaging/networkmanager/90-qmail-send and packaging/networkd/90-qmail-send once they have
# decided that an event means "online": if qmail-send.service is active, queue a reload
# (qmail-tcpok, then SIGALRM to qmail-send) without waiting for it, and log one line.
#
# Both dispatchers run their hooks one at a time and wait for each, so this returns at once,
# and it always returns 0. The interface name is untrusted data: it is compared with nothing,
# passed to no command, and made printable before it is logged. The hook has already set a
# fixed PATH, LC_ALL=C and IFS, so nothing in the environment chooses the programs run here.
#
# The one line goes to stderr: both dispatcher services hand their scripts' output to the
# journal (`journalctl -u NetworkManager-dispatcher`, `-u networkd-dispatcher`), which costs no
# extra process on the dispatcher's serial path and needs no syslog socket (logger(1) would).

UNIT=qmail-send.service

# printable VALUE: sets $printed to VALUE's first 64 bytes, every byte that is not printable
# ASCII (controls, space, bytes >= 0x80) and the quote and backslash that frame it in the log
# replaced by '?', so that a hostile interface name cannot forge or split log lines.
printable() {
    rest=$1
    printed=
    n=0
    while [ -n "$rest" ] && [ "$n" -lt 64 ]; do
        tail=${rest#?}
        byte=${rest%"$tail"}
        rest=$tail
        n=$((n + 1))
        case $byte in
            '"' | \\) byte='?' ;;
            [[:graph:]]) ;;
            *) byte='?' ;;
        esac
        printed=$printed$byte
    done
    if [ -n "$rest" ]; then
        printed=$printed...
    fi
}

# flush_on_reconnect EVENT INTERFACE: EVENT is the hook's own fixed text for what happened.
flush_on_reconnect() {
    # `command` skips any shell function of that name: only the program on the fixed PATH runs.
    command systemctl is-active --quiet "$UNIT" </dev/null >/dev/null 2>&1 || return 0
    printable "$2"
    # --no-block: queue the reload job and return at once.
    if command systemctl --no-block reload "$UNIT" </dev/null >/dev/null 2>&1; then
        printf '90-qmail-send: %s on interface "%s": flushing the qmail queue (reload of %s queued)\n' \
            "$1" "$printed" "$UNIT" >&2
    else
        printf '90-qmail-send: %s on interface "%s": could not queue a reload of %s\n' \
            "$1" "$printed" "$UNIT" >&2
    fi
    return 0
}
