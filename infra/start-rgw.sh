#!/usr/bin/env bash
# A real S3 server without Docker: a one-node Ceph (ceph-mon, ceph-osd on memstore) and its S3 gateway,
# radosgw, all on 127.0.0.1, with everything (config, logs, pidfiles, monitor data) under DIR.
#
#   infra/start-rgw.sh DIR        start; prints the S3 endpoint URL as its last line
#   infra/stop-rgw.sh DIR         stop (DIR stays; objects lived in the OSD's memory and are gone)
#
# Needs Debian's packages: apt-get install -y radosgw ceph-mon ceph-osd (Ceph 16, about 270 MB).
# Writes DIR/credentials.env (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, S3_ENDPOINT: keys chosen at
# random for user `cacheblend`) and DIR/endpoint. Ports: RGW_PORT and RGW_MON_PORT, else free ones.
# Each daemon gets RGW_START_TIMEOUT seconds (default 180: on a loaded 2-core machine radosgw's first
# start has taken over 30 s) to come up.
# Starting it in a DIR where it already runs prints the endpoint again. Takes 3-10 s; about 130 MiB
# resident idle, plus the objects it holds (memstore: RAM, capped at RGW_MEMSTORE_BYTES, default 4 GiB).
#
# The settings that make one node work (ceph.conf below):
# - auth none everywhere, and the OSD is placed in the CRUSH map by this script (`ceph osd crush add`):
#   without cephx it cannot add itself at start (osd_crush_update_on_start = false);
# - pools of size 1, a short paxos_propose_interval (the default 1 s makes every map change wait);
# - mon_data_avail_crit lowered, so a nearly full disk does not stop the monitor;
# - the rgw pools are created before radosgw's first request (else its first bucket and PUT take ~2 s).
set -euo pipefail

die() {
  echo "start-rgw: $*" >&2
  exit 1
}
[[ $# -eq 1 ]] || die "usage: infra/start-rgw.sh DIR"
for bin in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool; do
  command -v "$bin" >/dev/null 2>&1 ||
    die "$bin is not installed (Debian/Ubuntu: apt-get install -y radosgw ceph-mon ceph-osd)"
done
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
conf="$dir/ceph.conf"

# Whether an HTTP server answers at URL (http://127.0.0.1:PORT), with bash alone (no curl needed).
answers() {
  local port="${1##*:}"
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET / HTTP/1.0\r\n\r\n' >&3
    timeout 2 head -c 5 <&3 | grep -q HTTP
  ) 2>/dev/null
}
alive() { [[ -f "$dir/run/$1.pid" ]] && kill -0 "$(cat "$dir/run/$1.pid")" 2>/dev/null; }
if alive client.rgw && [[ -f "$dir/endpoint" ]] && answers "$(cat "$dir/endpoint")"; then
  echo "start-rgw: already running in $dir"
  cat "$dir/endpoint"
  exit 0
fi
if alive mon.a || alive osd.0 || alive client.rgw; then
  die "a previous start in $dir is half running; run infra/stop-rgw.sh $dir first"
fi

# A loopback port nothing listens on, from a random start (bash only: no ss/netstat needed).
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  die "no free port found"
}
timeout_s="${RGW_START_TIMEOUT:-180}"
mon_port="${RGW_MON_PORT:-$(free_port)}"
rgw_port="${RGW_PORT:-$(free_port)}"
[[ "$rgw_port" != "$mon_port" ]] || rgw_port="$(free_port)"

rm -rf "$dir/mon" "$dir/osd" "$dir/run" "$dir/log"
mkdir -p "$dir/mon" "$dir/osd" "$dir/run" "$dir/log"
fsid="$(cat /proc/sys/kernel/random/uuid)"
cat >"$conf" <<EOF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$mon_port
public_addr = 127.0.0.1
ms_bind_ipv6 = false
ms_bind_msgr1 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# Daemons default to the secure mode towards the monitor, which auth none cannot offer.
ms_mon_client_mode = crc
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.pid
log_file = $dir/log/\$name.log
keyring = $dir/keyring
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_max_pg_per_osd = 1000
mon_data_avail_crit = 1
mon_data_avail_warn = 2
paxos_propose_interval = 0.05
osd_crush_update_on_start = false
osd_objectstore = memstore
memstore_device_bytes = ${RGW_MEMSTORE_BYTES:-4294967296}
osd_max_object_name_len = 460
osd_max_object_namespace_len = 64

[mon.a]
mon_data = $dir/mon

[osd.0]
osd_data = $dir/osd

[client.rgw]
rgw_frontends = beast endpoint=127.0.0.1:$rgw_port
rgw_dns_name = 127.0.0.1
rgw_enable_usage_log = false
EOF

ceph_cmd() { timeout 30 ceph -c "$conf" "$@"; }
started() {
  echo "start-rgw: $1 did not start; the end of $dir/log/$2.log:" >&2
  tail -n 20 "$dir/log/$2.log" >&2 2>/dev/null || true
  "$(dirname "${BASH_SOURCE[0]}")/stop-rgw.sh" "$dir" >/dev/null 2>&1 || true
  exit 1
}

# Monitor: a one-entry monmap, an empty keyring (auth is off), mkfs, start (it daemonizes).
monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
: >"$dir/keyring"
ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap" >>"$dir/log/setup.log" 2>&1 || started ceph-mon mon.a
ceph-mon -c "$conf" -i a >>"$dir/log/setup.log" 2>&1 || started ceph-mon mon.a
ceph_cmd -s >/dev/null 2>&1 || started ceph-mon mon.a

# OSD 0 on memstore, placed in the CRUSH map by hand.
osd_id="$(ceph_cmd osd create)"
[[ "$osd_id" == 0 ]] || die "expected osd.0, got osd.$osd_id"
ceph-osd -c "$conf" -i 0 --mkfs >>"$dir/log/setup.log" 2>&1 || started ceph-osd osd.0
ceph-osd -c "$conf" -i 0 >>"$dir/log/setup.log" 2>&1 || started ceph-osd osd.0
# `ceph` reads commands from stdin in one session: one Python start instead of one per command.
ceph_cmd >>"$dir/log/setup.log" 2>&1 <<EOF
osd crush add-bucket localhost host
osd crush move localhost root=default
osd crush add osd.0 1.0 host=localhost
EOF
deadline=$((SECONDS + timeout_s))
while ((SECONDS < deadline)); do
  ceph_cmd osd dump 2>/dev/null | grep -q '^osd.0 up' && break
  alive osd.0 || started ceph-osd osd.0
  sleep 0.1
done
ceph_cmd osd dump 2>/dev/null | grep -q '^osd.0 up' || started ceph-osd osd.0

# radosgw's pools, made before its first request.
for pool in .rgw.root default.rgw.control default.rgw.meta default.rgw.log default.rgw.buckets.index \
  default.rgw.buckets.data default.rgw.buckets.non-ec; do
  echo "osd pool create $pool 8 8"
  echo "osd pool application enable $pool rgw"
done | ceph_cmd >>"$dir/log/setup.log" 2>&1

# The S3 user, with keys chosen here.
hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
access_key="RGW$(hex 9 | tr a-f A-F)"
secret_key="$(hex 20)"
timeout "$timeout_s" radosgw-admin -c "$conf" -n client.rgw user create --uid=cacheblend --display-name=cacheblend \
  --access-key="$access_key" --secret-key="$secret_key" >>"$dir/log/setup.log" 2>&1 ||
  started radosgw-admin setup

# It daemonizes once it has reached the cluster; its pidfile may come a moment later.
timeout "$timeout_s" radosgw -c "$conf" -n client.rgw >>"$dir/log/setup.log" 2>&1 ||
  started radosgw client.rgw
endpoint="http://127.0.0.1:$rgw_port"
deadline=$((SECONDS + timeout_s))
while ((SECONDS < deadline)); do
  answers "$endpoint" && break
  if [[ -f "$dir/run/client.rgw.pid" ]] && ! alive client.rgw; then started radosgw client.rgw; fi
  sleep 0.1
done
answers "$endpoint" || started radosgw client.rgw

umask 077
cat >"$dir/credentials.env" <<EOF
AWS_ACCESS_KEY_ID=$access_key
AWS_SECRET_ACCESS_KEY=$secret_key
S3_ENDPOINT=$endpoint
EOF
echo "$endpoint" >"$dir/endpoint"
echo "start-rgw: Ceph $(ceph-mon --version | awk '{print $3}') radosgw up in $dir (keys in $dir/credentials.env)"
echo "$endpoint"
