#!/usr/bin/env bash
# What the Debian packages hold. Always: `cmake --install --component` of
# `agent` and `controller` into a temporary root, checked file by file. When
# the build makes packages (a daemon is a target): `cpack -G DEB` into a
# temporary directory, then the .deb files checked with dpkg-deb (names,
# Depends, conffiles, maintainer scripts, file list) and lintian when it is
# installed.
#
#   bash tests/deploy/package_layout_test.sh BUILD_DIR
set -uo pipefail
build=$(cd "${1:?usage: package_layout_test.sh BUILD_DIR}" && pwd)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
expect_file() {
  local root=$1 path=$2 mode=${3:-}
  if [ ! -f "$root$path" ]; then
    fail "$(basename "$root"): missing $path"
  elif [ -n "$mode" ] && [ "$(stat -c %a "$root$path")" != "$mode" ]; then
    fail "$(basename "$root"): $path has mode $(stat -c %a "$root$path"), expected $mode"
  else
    pass "$(basename "$root"): $path${mode:+ ($mode)}"
  fi
}

# Which daemons this build has, from the CPack configuration.
packaged=$(sed -n 's/^set(CPACK_COMPONENTS_ALL "\(.*\)")$/\1/p' "$build/CPackConfig.cmake" | tr ';' ' ')
has_component() { case " $packaged " in *" $1 "*) return 0 ;; esac; return 1; }

# The man pages are build outputs of their own.
cmake --build "$build" --target sesame_man_pages >/dev/null 2>&1 || fail "building sesame_man_pages"

for component in agent controller; do
  root=$tmp/$component
  if DESTDIR=$root cmake --install "$build" --prefix /usr --component "$component" >"$tmp/install.log" 2>&1; then
    pass "cmake --install --component $component"
  else
    fail "cmake --install --component $component"
    sed 's/^/     /' "$tmp/install.log"
  fi
done

root=$tmp/agent
expect_file "$root" /lib/systemd/system/sesame-agent.service 644
expect_file "$root" /etc/sesame/agent.conf 644
expect_file "$root" /etc/default/sesame-agent 644
for f in knockd-standalone.conf agent-nftables.conf agent-managed.conf sesame-agent-root-backends.conf; do
  expect_file "$root" /usr/share/doc/sesame-agent/examples/$f 644
done
expect_file "$root" /usr/share/doc/sesame-agent/README.md 644
expect_file "$root" /usr/share/man/man8/sesame-agent.8.gz 644
has_component agent && expect_file "$root" /usr/sbin/sesame-agent 755

root=$tmp/controller
expect_file "$root" /lib/systemd/system/sesame-controller.service 644
expect_file "$root" /usr/sbin/sesame-pki 755
expect_file "$root" /usr/share/doc/sesame-controller/examples/controller.conf 644
expect_file "$root" /usr/share/doc/sesame-controller/pki/README.md 644
expect_file "$root" /usr/share/sesame-controller/prometheus/sesame.rules.yml 644
expect_file "$root" /usr/share/sesame-controller/grafana/sesame-fleet.json 644
expect_file "$root" /usr/share/bash-completion/completions/sesamectl 644
expect_file "$root" /usr/share/man/man8/sesame-controller.8.gz 644
expect_file "$root" /usr/share/man/man8/sesame-pki.8.gz 644
expect_file "$root" /usr/share/man/man1/sesamectl.1.gz 644

# Debian policy's copyright file and changelog in each package; the
# changelog's top entry is the packages' version.
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")-$(
  sed -n 's/^set(CPACK_DEBIAN_PACKAGE_RELEASE "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
for component in agent controller; do
  expect_file "$tmp/$component" "/usr/share/doc/sesame-$component/copyright" 644
  expect_file "$tmp/$component" "/usr/share/doc/sesame-$component/changelog.Debian.gz" 644
  top=$(zcat "$tmp/$component/usr/share/doc/sesame-$component/changelog.Debian.gz" 2>/dev/null | head -n 1)
  case "$top" in
    "sesame ($version) "*) pass "$component: the changelog's top entry is $version" ;;
    *) fail "$component: the changelog's top entry is \"$top\", expected version $version" ;;
  esac
done
if has_component controller; then
  expect_file "$root" /usr/sbin/sesame-controller 755
  if grep -q 'sesamectl' "$build/install_manifest_controller.txt" 2>/dev/null || [ -x "$build/controller/sesamectl" ] ||
    [ -x "$build/controller/cli/sesamectl" ]; then
    expect_file "$root" /usr/bin/sesamectl 755
  fi
fi
if gzip -t "$tmp/agent/usr/share/man/man8/sesame-agent.8.gz" 2>/dev/null; then
  pass "man pages are gzip files"
else
  fail "man pages are not gzip files"
fi

# --- the .deb files themselves ---------------------------------------------
if [ -z "$packaged" ]; then
  echo "note: no daemon is a target of this build yet (agent/main.cc, controller/main.cc): no package to build"
else
  # cpack installs the project after building its "preinstall" target, which
  # for the whole tree means every test and benchmark. Pointed at build/deploy
  # (where every install rule of the packages lives) it builds only that
  # directory's targets; the daemons must already be built.
  for component in $packaged; do
    [ -x "$build/agent/sesame-agent" ] || [ "$component" != agent ] ||
      fail "sesame-agent is not built: build it before this test"
    [ -x "$build/controller/sesame-controller" ] || [ "$component" != controller ] ||
      fail "sesame-controller is not built: build it before this test"
  done
  if (cd "$tmp" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/pkg" \
    -D "CPACK_INSTALL_CMAKE_PROJECTS=$build/deploy;sesame;ALL;/") >"$tmp/cpack.log" 2>&1; then
    pass "cpack -G DEB ($packaged)"
  else
    fail "cpack -G DEB"
    sed 's/^/     /' "$tmp/cpack.log"
  fi
  for component in $packaged; do
    deb=$(ls "$tmp/pkg/sesame-${component}"_*.deb 2>/dev/null | head -n1)
    if [ -z "$deb" ]; then
      fail "no sesame-${component}_*.deb"
      continue
    fi
    pass "built $(basename "$deb")"
    field() { dpkg-deb -f "$deb" "$1"; }
    [ "$(field Package)" = "sesame-$component" ] && pass "Package: sesame-$component" || fail "Package is $(field Package)"
    depends=$(field Depends)
    for dep in adduser libc6; do
      case "$depends" in *"$dep"*) pass "sesame-$component depends on $dep" ;; *) fail "sesame-$component Depends lacks $dep: $depends" ;; esac
    done
    if [ "$component" = agent ]; then
      for dep in libpcap0.8 libnftables1; do
        case "$depends" in *"$dep"*) pass "sesame-agent depends on $dep" ;; *) fail "sesame-agent Depends lacks $dep: $depends" ;; esac
      done
    else
      case "$depends" in *openssl*) pass "sesame-controller depends on openssl" ;; *) fail "sesame-controller Depends lacks openssl" ;; esac
    fi
    dpkg-deb -e "$deb" "$tmp/control-$component"
    for script in postinst prerm postrm; do
      expect_file "$tmp/control-$component" "/$script" 755
      sh -n "$tmp/control-$component/$script" || fail "$script of sesame-$component does not parse"
    done
    if [ "$component" = agent ]; then
      if [ "$(cat "$tmp/control-agent/conffiles")" = "$(printf '/etc/sesame/agent.conf\n/etc/default/sesame-agent')" ]; then
        pass "conffiles: /etc/sesame/agent.conf /etc/default/sesame-agent"
      else
        fail "conffiles of sesame-agent: $(cat "$tmp/control-agent/conffiles" 2>/dev/null)"
      fi
    fi
    mkdir -p "$tmp/extract-$component"
    dpkg-deb -x "$deb" "$tmp/extract-$component"
    if diff <(cd "$tmp/$component" && find . -type f | sort) <(cd "$tmp/extract-$component" && find . -type f | sort) \
      >"$tmp/diff.log"; then
      pass "sesame-$component holds exactly what its component installs"
    else
      fail "sesame-$component differs from its component install (< install, > package)"
      sed 's/^/     /' "$tmp/diff.log"
    fi
    dpkg-deb -c "$deb" | awk '{print $1, $6}' >"$tmp/files-$component"
    echo "     $(basename "$deb"):"
    sed 's/^/       /' "$tmp/files-$component"
    binary=$tmp/extract-$component/usr/sbin/sesame-$component
    if readelf -S "$binary" 2>/dev/null | grep -q '\.symtab'; then
      fail "sesame-$component ships an unstripped binary"
    else
      pass "sesame-$component binary is stripped"
    fi
    if command -v lintian >/dev/null 2>&1; then
      # Its own temporary files (it leaves some behind) go with the test's.
      TMPDIR=$tmp lintian --no-tag-display-limit "$deb" >"$tmp/lintian.log" 2>&1
      if grep -q '^E:' "$tmp/lintian.log"; then
        fail "lintian errors for sesame-$component"
        grep '^E:' "$tmp/lintian.log" | sed 's/^/     /'
      else
        pass "lintian: no error for sesame-$component"
      fi
      # Warnings stay only with a reason in deploy/README.md ("lintian").
      grep '^W:' "$tmp/lintian.log" | while read -r _ _ tag _; do
        if grep -q "^- \`$tag\`" "$(dirname "$0")/../../deploy/README.md"; then
          pass "lintian warning $tag (sesame-$component) is explained in deploy/README.md"
        else
          echo "FAIL lintian warning $tag (sesame-$component) is not explained in deploy/README.md"
        fi
      done | tee "$tmp/lintian.checks"
      failures=$((failures + $(grep -c '^FAIL ' "$tmp/lintian.checks" || true)))
    fi
  done
fi

# --- installing them, in an overlay of / -------------------------------------
# dpkg -i, -i again, -r, -P of every package built, in private mount and
# network namespaces with / overlaid by a temporary upper layer: the
# maintainer scripts run for real (users, state directories, conffiles, the
# nftables table removed on remove) and nothing reaches the host.
debs=$(ls "$tmp"/pkg/*.deb 2>/dev/null)
if [ -z "$debs" ]; then
  :
elif [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null || ! grep -qw overlay /proc/filesystems; then
  echo "note: not root or no overlayfs: the packages are not installed"
else
  mkdir -p "$tmp/ovl/upper" "$tmp/ovl/work" "$tmp/ovl/merged" "$tmp/ovl/debs"
  cp $debs "$tmp/ovl/debs/"
  cat >"$tmp/ovl/debs/inside.sh" <<'INSIDE'
set -u
cd /tmp/debs
step() { echo "== $*"; }
check() { if eval "$2"; then echo "ok   install: $1"; else echo "FAIL install: $1"; fi; }
packages=$(for d in *.deb; do dpkg-deb -f "$d" Package; done)
step "dpkg -i"; dpkg -i ./*.deb >install.log 2>&1; check "dpkg -i succeeds" "[ $? -eq 0 ] || { cat install.log; false; }"
for p in $packages; do
  check "$p is installed" "dpkg-query -W -f='\${Status}' $p | grep -q 'install ok installed'"
  check "user $p exists, without a login shell" "getent passwd $p | grep -q ':/usr/sbin/nologin$'"
  check "/var/lib/$p belongs to $p" "[ \"\$(stat -c %U /var/lib/$p)\" = $p ]"
done
if echo "$packages" | grep -qx sesame-agent; then
  check "the one-time file is 0600 sesame-agent" "[ \"\$(stat -c '%a %U' /var/lib/sesame-agent/one-time-ssh)\" = '600 sesame-agent' ]"
  check "the installed agent.conf passes --check-config" \
    "/usr/sbin/sesame-agent --check-config /etc/sesame/agent.conf >check.log 2>&1 || { cat check.log; false; }"
  echo '# local edit' >>/etc/sesame/agent.conf
fi
step "dpkg -i again"; dpkg -i ./*.deb >install.log 2>&1; check "reinstalling succeeds" "[ $? -eq 0 ] || { cat install.log; false; }"
if echo "$packages" | grep -qx sesame-agent; then
  check "a local edit of the conffile survives" "grep -q '# local edit' /etc/sesame/agent.conf"
  if command -v nft >/dev/null; then
    check "a table inet sesame exists before removal" "nft add table inet sesame"
  fi
fi
step "dpkg -r"; dpkg -r $packages >remove.log 2>&1; check "removing succeeds" "[ $? -eq 0 ] || { cat remove.log; false; }"
if echo "$packages" | grep -qx sesame-agent; then
  check "removal keeps the conffile" "[ -f /etc/sesame/agent.conf ]"
  if command -v nft >/dev/null; then
    check "removal deletes the agent's nftables table" "! nft list table inet sesame >/dev/null 2>&1"
  fi
fi
step "dpkg -P"; dpkg -P $packages >purge.log 2>&1; check "purging succeeds" "[ $? -eq 0 ] || { cat purge.log; false; }"
if echo "$packages" | grep -qx sesame-agent; then
  check "purge removes the conffile" "[ ! -e /etc/sesame/agent.conf ]"
  check "purge removes the agent's state" "[ ! -e /var/lib/sesame-agent ]"
fi
if echo "$packages" | grep -qx sesame-controller; then
  check "purge keeps the controller's store" "[ -d /var/lib/sesame-controller ]"
fi
INSIDE
  ovl=$tmp/ovl
  timeout 300 unshare -m -n --propagation private bash -c "
    mount -t overlay overlay -o lowerdir=/,upperdir=$ovl/upper,workdir=$ovl/work $ovl/merged &&
    mount -t proc proc $ovl/merged/proc &&
    mount --rbind /dev $ovl/merged/dev &&
    mount -t tmpfs tmpfs $ovl/merged/run &&
    mount -t tmpfs tmpfs $ovl/merged/tmp &&
    mkdir -p $ovl/merged/tmp/debs && mount --bind $ovl/debs $ovl/merged/tmp/debs &&
    chroot $ovl/merged bash /tmp/debs/inside.sh" >"$tmp/inside.log" 2>&1
  grep -E '^(ok|FAIL) ' "$tmp/inside.log"
  failures=$((failures + $(grep -c '^FAIL ' "$tmp/inside.log")))
  if ! grep -q '^ok   install: dpkg -i succeeds' "$tmp/inside.log"; then
    fail "the packages could not be installed in an overlay"
    sed 's/^/     /' "$tmp/inside.log" | tail -n 30
  fi
fi

echo
if [ $failures -gt 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
