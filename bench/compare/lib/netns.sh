# The bench network: two private network namespaces joined by one veth pair.
#
#   $NS_GW  (daemons)  sx-gw0 198.19.250.1/24 fd5e:5a::1/64  02:5e:5a:00:00:01
#   $NS_CL  (senders)  sx-cl0 198.19.250.2/24 fd5e:5a::2/64  02:5e:5a:00:00:02
#
# The pair is created inside the namespaces, so the host never sees it, and
# every sender runs in $NS_CL where sx-cl0 is the only link besides lo:
# nothing generated here can leave the machine. GW_FIREWALL=1 drops TCP and
# UDP in $NS_GW's input hook (see netns_up). Sourced by run.sh.

NS_GW="sx-gw-$$"
NS_CL="sx-cl-$$"
GW_IF=sx-gw0
CL_IF=sx-cl0
GW_MAC=02:5e:5a:00:00:01
CL_MAC=02:5e:5a:00:00:02
GW_IP=198.19.250.1
CL_IP=198.19.250.2
GW_IP6=fd5e:5a::1
CL_IP6=fd5e:5a::2
NETNS_CREATED=0

netns_up() {
  ip netns add "$NS_GW" || return 1
  NETNS_CREATED=1
  ip netns add "$NS_CL" || return 1
  ip link add "$GW_IF" netns "$NS_GW" address "$GW_MAC" type veth \
    peer name "$CL_IF" netns "$NS_CL" address "$CL_MAC" || return 1
  ip -n "$NS_GW" addr add "$GW_IP/24" dev "$GW_IF" &&
    ip -n "$NS_CL" addr add "$CL_IP/24" dev "$CL_IF" &&
    ip -n "$NS_GW" addr add "$GW_IP6/64" dev "$GW_IF" nodad &&
    ip -n "$NS_CL" addr add "$CL_IP6/64" dev "$CL_IF" nodad &&
    ip -n "$NS_GW" link set lo up && ip -n "$NS_CL" link set lo up &&
    ip -n "$NS_GW" link set "$GW_IF" up && ip -n "$NS_CL" link set "$CL_IF" up || return 1
  [ "${GW_FIREWALL:-0}" = 1 ] || return 0
  # A knock host's default-drop firewall: TCP and UDP arriving on $GW_IF are
  # dropped in the input hook, so the daemons' side answers no flood packet
  # with a RST or an ICMP error. Capture (AF_PACKET) sees them before that.
  in_gw nft -f - <<EOF
table inet sx_bench {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "$GW_IF" meta l4proto { tcp, udp } drop
  }
}
EOF
}

# Deleting a namespace destroys its end of the veth, and with it the pair.
netns_down() {
  [ "$NETNS_CREATED" = 1 ] || return 0
  ip netns del "$NS_CL" 2>/dev/null
  ip netns del "$NS_GW" 2>/dev/null
  NETNS_CREATED=0
}

in_gw() { ip netns exec "$NS_GW" "$@"; }
in_cl() { ip netns exec "$NS_CL" "$@"; }

# Frame counters of the daemons' side of the link: "rx_packets rx_dropped".
gw_link_counters() {
  local dir=/sys/class/net/$GW_IF/statistics
  in_gw sh -c "echo \$(cat $dir/rx_packets) \$(cat $dir/rx_dropped)"
}
