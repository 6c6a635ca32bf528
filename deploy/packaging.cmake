# Debian packages, built with CPack from the build directory:
#
#   cmake --build build -j2 && (cd build && cpack -G DEB)
#
# sesame-agent       /usr/sbin/sesame-agent, its systemd unit, the default
#                    /etc/sesame/agent.conf (conffile), examples, man page
# sesame-controller  /usr/sbin/sesame-controller, /usr/bin/sesamectl,
#                    /usr/sbin/sesame-pki, its systemd unit, examples, man pages
#
# A package is made only when its daemon is a target of this build (agent/
# main.cc, controller/main.cc); everything else is installed by the
# components `agent` and `controller` either way, so `cmake --install
# --component` shows a package's layout before its binary exists.
# Maintainer scripts (system users, state directories): deploy/debian/.

# What the packages install, component by component: deploy/CMakeLists.txt,
# a directory of its own so that `cpack` can be pointed at build/deploy alone
# (its "preinstall" then builds the man pages, not the whole tree; see
# tests/deploy/package_layout_test.sh).
add_subdirectory(${CMAKE_CURRENT_LIST_DIR} ${CMAKE_BINARY_DIR}/deploy)
set(SESAME_DEPLOY_DIR ${CMAKE_CURRENT_LIST_DIR})
# Who builds the packages sets their own address (-DSESAME_PACKAGE_CONTACT=);
# deploy/debian/changelog names the same maintainers.
set(SESAME_PACKAGE_CONTACT "sesame maintainers <sesame-maintainers@example.org>" CACHE STRING
  "Maintainer field of the Debian packages")

# --- CPack ----------------------------------------------------------------
set(SESAME_PACKAGED_COMPONENTS)
if(TARGET sesame-agent)
  list(APPEND SESAME_PACKAGED_COMPONENTS agent)
endif()
if(TARGET sesame-controller)
  list(APPEND SESAME_PACKAGED_COMPONENTS controller)
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sesame)
set(CPACK_PACKAGE_VENDOR sesame)
set(CPACK_PACKAGE_CONTACT "${SESAME_PACKAGE_CONTACT}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL ${SESAME_PACKAGED_COMPONENTS})
set(CPACK_DEB_COMPONENT_INSTALL ON)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME sesame-agent)
# Library dependencies come from dpkg-shlibdeps (libpcap0.8, libnftables1,
# libgrpc++1.51, libabsl20220623, ...); these are the programs it runs.
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_AGENT_PACKAGE_RECOMMENDS "nftables")
set(CPACK_DEBIAN_AGENT_PACKAGE_SUGGESTS "iptables, ufw, tcpd, knockd, openssh-server")
set(CPACK_DEBIAN_AGENT_DESCRIPTION "port-knocking agent for bastion hosts, knockd-compatible
sesame-agent watches the link layer with libpcap, recognises knock
sequences per source address and opens access for that address through
TCP Wrappers (hosts.allow), nftables, iptables, ufw or a command run
without a shell. It reads knockd.conf files unchanged. In a sesame fleet
it is managed by sesame-controller, which keeps one-time sequences valid
at most once across all bastions.")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
  ${SESAME_DEPLOY_DIR}/debian/agent/postinst
  ${SESAME_DEPLOY_DIR}/debian/agent/prerm
  ${SESAME_DEPLOY_DIR}/debian/agent/postrm
  ${SESAME_DEPLOY_DIR}/debian/agent/conffiles)

set(CPACK_DEBIAN_CONTROLLER_PACKAGE_NAME sesame-controller)
set(CPACK_DEBIAN_CONTROLLER_PACKAGE_DEPENDS "adduser, openssl")
set(CPACK_DEBIAN_CONTROLLER_PACKAGE_SUGGESTS "prometheus-node-exporter")
set(CPACK_DEBIAN_CONTROLLER_DESCRIPTION "fleet controller for sesame port-knocking agents, and sesamectl
sesame-controller hands out one-time knock sequences, keeps them valid at
most once across every bastion of the fleet, orders grants and
revocations, and keeps a signed, hash-chained audit log. Agents and
operators authenticate with certificates over mutual TLS (gRPC).

This package also holds sesamectl, the operator's command line, and
sesame-pki, which creates the fleet's certificate authority and
certificates.")
set(CPACK_DEBIAN_CONTROLLER_PACKAGE_CONTROL_EXTRA
  ${SESAME_DEPLOY_DIR}/debian/controller/postinst
  ${SESAME_DEPLOY_DIR}/debian/controller/prerm
  ${SESAME_DEPLOY_DIR}/debian/controller/postrm)

include(CPack)
