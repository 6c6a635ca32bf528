// knockd.conf files as people run them, byte for byte: the configuration
// parser's tests and the agent's end-to-end tests take the same text.
#pragma once

namespace sesame::testing {

// Debian 12's /etc/knockd.conf from knockd 0.8-2.
inline constexpr char kDebianKnockdConf[] =
    "[options]\n"
    "\tUseSyslog\n"
    "\n"
    "[openSSH]\n"
    "\tsequence    = 7000,8000,9000\n"
    "\tseq_timeout = 5\n"
    "\tcommand     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n"
    "\ttcpflags    = syn\n"
    "\n"
    "[closeSSH]\n"
    "\tsequence    = 9000,8000,7000\n"
    "\tseq_timeout = 5\n"
    "\tcommand     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n"
    "\ttcpflags    = syn\n"
    "\n"
    "[openHTTPS]\n"
    "\tsequence    = 12345,54321,24680,13579\n"
    "\tseq_timeout = 5\n"
    "\tcommand     = /usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%\n"
    "\ttcpflags    = syn\n"
    "\n";

// The classic way to open SSH through TCP Wrappers with knockd: a shell
// redirection to open, a Perl one-liner to close.
inline constexpr char kTcpWrappersKnockdConf[] =
    "[openSSH]\n"
    "    sequence    = 7000,8000,9000\n"
    "    seq_timeout = 10\n"
    "    tcpflags    = syn\n"
    "    command     = /bin/echo \"SSHD: %IP%\" >> /etc/hosts.allow\n"
    "[closeSSH]\n"
    "    sequence    = 9000,8000,7000\n"
    "    seq_timeout = 10\n"
    "    tcpflags    = syn\n"
    "    command     = /usr/bin/perl -ni.bak -e 'print unless /SSHD: %IP%/' /etc/hosts.allow\n";

}  // namespace sesame::testing
