#!/usr/bin/env bash
# `make run`: a demo certificate chain, the demo EAS backend and the gateway
# on built-in defaults, in the foreground. Ctrl-C stops both.
set -euo pipefail
O=${1:-build}
cd "$(dirname "$0")/.."
D=run/demo
PORT=${EASGATE_DEMO_PORT:-8443}
BPORT=${EASGATE_DEMO_BACKEND_PORT:-8081}
mkdir -p "$D"
[ -s "$D/pki/server.pem" ] || tools/mkcerts.sh "$D/pki" localhost 127.0.0.1 ::1 >/dev/null
"$O/eas-demo-backend" --listen "127.0.0.1:$BPORT" --name demo --quiet &
BPID=$!
trap 'kill $BPID 2>/dev/null; wait $BPID 2>/dev/null' EXIT
cat <<MSG

  easgate demo: gateway https://localhost:$PORT  ->  demo EAS backend 127.0.0.1:$BPORT

  Try (in another terminal):
    curl --cacert $D/pki/root.pem -u alice:secret -X OPTIONS -i https://localhost:$PORT/Microsoft-Server-ActiveSync
    curl --cacert $D/pki/root.pem -u alice:secret -H 'MS-ASProtocolVersion: 14.1' \\
         -H 'User-Agent: Apple-iPhone4C1/1002.142' --data-binary @/dev/null \\
         'https://localhost:$PORT/Microsoft-Server-ActiveSync?Cmd=Sync&User=alice&DeviceId=ApplDEMO01&DeviceType=iPhone'
    $O/easctl -s $D/control.sock devices
    $O/easctl -s $D/control.sock rules add 'block DeviceOS like "iOS 6.1*"'
    (repeat the Sync: the phone now gets EAS status 129, DeviceIsBlockedForThisUser)
    openssl s_client -connect localhost:$PORT -CAfile $D/pki/root.pem -verify_return_error </dev/null

  Ctrl-C stops the demo.

MSG
"$O/easgated" --listen "0.0.0.0:$PORT" --tls-cert "$D/pki/server.pem" --tls-key "$D/pki/server.key" \
	--trust-file "$D/pki/root.pem" --state-dir "$D/state" --control-socket "$D/control.sock" \
	--backend "demo=127.0.0.1:$BPORT,health=/health" --metrics 127.0.0.1:9443
