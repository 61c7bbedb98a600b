#!/usr/bin/env bash
# Quick start on embedded defaults: installs, builds, then runs datasync-server over HTTPS (SQLite
# index in ./var/state.db, directory storage ./var/share, a private CA and server certificate it
# makes in ./var/tls) and one local agent that trusts that CA, approves it, adds a job over a
# generated sample folder, syncs it and says what happened. `quickstart.sh stop` stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR="$PWD/var"
LISTEN="${DATASYNC_LISTEN:-127.0.0.1:8080}"
URL="https://$LISTEN"
TLS="$VAR/tls"

stop() {
  for p in agent server; do
    if [ -f "$VAR/$p.pid" ] && kill -0 "$(cat "$VAR/$p.pid")" 2>/dev/null; then
      kill "$(cat "$VAR/$p.pid")" && echo "stopped $p"
    fi
    rm -f "$VAR/$p.pid"
  done
}
if [ "${1:-}" = "stop" ]; then stop; exit 0; fi

# A private CA (ca.pem) and a server certificate it signs for localhost, 127.0.0.1 and the
# DATASYNC_LISTEN host, made once. The CA key stays in var/tls (mode 0600): keep it private.
make_tls() {
  [ -f "$TLS/server.pem" ] && [ -f "$TLS/server.key" ] && [ -f "$TLS/ca.pem" ] && return
  mkdir -p "$TLS" && chmod 700 "$TLS"
  local host="${LISTEN%:*}" san="DNS:localhost,IP:127.0.0.1"
  case "$host" in
    127.0.0.1|localhost|0.0.0.0|"") ;;
    *[!0-9.]*) san="$san,DNS:$host" ;;
    *) san="$san,IP:$host" ;;
  esac
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -keyout "$TLS/ca.key" -out "$TLS/ca.pem" -subj "/CN=DataSync quick start CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$TLS/server.key" -out "$TLS/server.csr" -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" >"$TLS/server.ext"
  openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial \
    -days 825 -extfile "$TLS/server.ext" -out "$TLS/server.pem" 2>/dev/null
  chmod 600 "$TLS/ca.key" "$TLS/server.key"
  echo "made a private CA and a server certificate ($san) in $TLS"
}

./scripts/install-deps.sh
./scripts/build.sh
stop
mkdir -p "$VAR"
BIN="$PWD/build/bin"
make_tls

nohup "$BIN/datasync-server" --listen "$LISTEN" --index "sqlite:$VAR/state.db" \
  --storage "file://$VAR/share" --data "$VAR" --tls-cert "$TLS/server.pem" --tls-key "$TLS/server.key" \
  >"$VAR/server.out" 2>"$VAR/server.log" &
echo $! >"$VAR/server.pid"
for _ in $(seq 100); do curl -fsS --cacert "$TLS/ca.pem" "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS --cacert "$TLS/ca.pem" "$URL/readyz" >/dev/null || { echo "server did not start; see $VAR/server.log"; exit 1; }
export DATASYNC_SERVER="$URL" DATASYNC_TOKEN_FILE="$VAR/admin.token" DATASYNC_CA_FILE="$TLS/ca.pem"
# A dashboard account "admin" with a generated password, kept in $VAR/dashboard.password (0600).
if [ ! -f "$VAR/dashboard.password" ]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(12))' >"$VAR/dashboard.password")
  "$BIN/datasync-server" users add admin --role admin --index "sqlite:$VAR/state.db" <"$VAR/dashboard.password" >/dev/null
fi

if [ ! -d "$VAR/sample" ]; then python3 scripts/make_sample.py "$VAR/sample" 300; fi
NAME="${DATASYNC_AGENT_NAME:-$(hostname -s)}"
nohup "$BIN/datasync-agent" --server "$URL" --ca-file "$TLS/ca.pem" --state-dir "$VAR/agent" --name "$NAME" \
  --allow-source "$VAR/sample" --enroll-poll 500ms >"$VAR/agent.log" 2>&1 &
echo $! >"$VAR/agent.pid"

status_of() { "$BIN/datasync" runners list --json | python3 -c "import json,sys
print(next((r['status'] for r in json.load(sys.stdin) if r['name']=='$NAME'), ''))"; }
for _ in $(seq 100); do [ -n "$(status_of)" ] && break; sleep 0.2; done
if [ "$(status_of)" = "pending" ]; then "$BIN/datasync" runners approve "$NAME"; fi
"$BIN/datasync" jobs list "$NAME" --json | grep -q '"name": "sample"' ||
  "$BIN/datasync" jobs add "$NAME" sample --source "$VAR/sample" --dest "$NAME/sample" --settle 1s --interval 15m
for _ in $(seq 100); do
  "$BIN/datasync" runners list --json | grep -q '"online": true' && break; sleep 0.2
done
"$BIN/datasync" sync "$NAME" sample --wait >/dev/null
echo
echo "Runs of $NAME/sample (a new job also runs once on its own at start-up):"
"$BIN/datasync" runs "$NAME" sample
"$BIN/datasync" files "$NAME" sample --all >/dev/null
echo
echo "DataSync is running on its embedded defaults:"
echo "  dashboard       : $URL/        (user admin, password in $VAR/dashboard.password)"
echo "                    the certificate is from the quick start's own CA: import $TLS/ca.pem into"
echo "                    your browser (or accept its warning once)"
echo "  TLS             : $TLS/server.pem (CA $TLS/ca.pem); renew the files and send the server SIGHUP"
echo "  admin API / CLI : admin token in $VAR/admin.token"
echo "  state index     : $VAR/state.db (SQLite)"
echo "  storage         : $VAR/share/$NAME/sample"
echo "  logs            : $VAR/server.log, $VAR/agent.log"
echo "Try: DATASYNC_SERVER=$URL DATASYNC_CA_FILE=$TLS/ca.pem DATASYNC_TOKEN_FILE=$VAR/admin.token $BIN/datasync runs"
echo "Stop both with: ./scripts/quickstart.sh stop"
