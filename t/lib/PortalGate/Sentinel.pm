package PortalGate::Sentinel;

# A Redis master, its replica and three sentinels (Debian's redis-server
# and redis-sentinel), each on a free loopback port, in one scratch folder,
# all stopped at the end even when a test dies; portal-gatectl runs
# against the sentinel URL.
#
#   my $hs = PortalGate::Sentinel->new;       # started, sentinels agreed
#   PortalGate::Sentinel->new(pass => 'pw');  # all of them requirepass pw
#                                             # (sentinels too), in the URL
#   $hs->url;                 # redis-sentinel://127.0.0.1:P1,...#mymaster
#   $hs->url('other');        # the same with another master name
#   $hs->ctl('create', 'f');  # {exit, out, err}, as PortalGate::Redis's
#   $hs->cli($port, 'GET', 'k');      # redis-cli against any of them
#   $hs->master_port;         # where the sentinels say the master is
#   $hs->master_port_cached;  # the last master_port (sentinels down)
#   $hs->replica_port;        # the other one
#   $hs->kill_master;         # SIGKILL; returns the old master's port
#   $hs->wait_failover($old, $limit);  # until the sentinels name another
#   $hs->revive($old);        # the killed one again, a replica now
#   $hs->stop_sentinel($i);   # the URL's sentinel $i (0..2) alone
#   $hs->stop_sentinels;
#   $hs->stray_sentinel('pw2');  # one more, outside the set, with another
#                                # password: its port
#   $hs->connections_received($port); # INFO stats' count, this one's too
#   $hs->tcp_peers($pid);     # the ports process $pid is connected to
#
# Sentinels must rewrite their config file: each has its own, in the
# scratch folder. Waits are limits (PG_TEST_SLOW scales them), never exact.

use strict;
use warnings;

use File::Temp qw(tempdir);
use IPC::Open3 qw(open3);
use IO::Socket::INET;
use Symbol qw(gensym);
use Time::HiRes qw(sleep time);
use PortalGate::Redis;

my %LIVE;
my $OWNER = $$;
# as PortalGate::Test's: PG_TEST_SLOW multiplies every limit
my $SLOW = ($ENV{PG_TEST_SLOW} // '') =~ /^\d+(?:\.\d+)?$/
           && $ENV{PG_TEST_SLOW} > 0 ? $ENV{PG_TEST_SLOW} : 1;

sub _free_port { PortalGate::Redis::_free_port() }

# redis-sentinel is redis-server in sentinel mode; Debian ships the name
# in its own package, which `make deps` installs
sub _sentinel_cmd {
    for my $d (split /:/, $ENV{PATH} // '') {
        return ('redis-sentinel') if -x "$d/redis-sentinel";
    }
    return ('redis-server');
}

sub new {
    my ($class, %o) = @_;
    my $self = bless { dir => tempdir('portal-gate-sentinel-XXXXXX',
                                      TMPDIR => 1, CLEANUP => 1),
                       name => $o{name} // 'mymaster', pids => {},
                       pass => $o{pass} }, $class;
    # a password: the servers' and the sentinels' (which give it to each
    # other), and the replica's to its master, either way round
    my @auth = defined $o{pass} ? ('--requirepass', $o{pass},
                                   '--masterauth', $o{pass}) : ();
    $self->{mport} = _free_port();
    $self->{rport} = _free_port();
    $self->{sports} = [map { _free_port() } 1 .. 3];

    $self->_spawn('master', 'redis-server', '--bind', '127.0.0.1',
                  '--port', $self->{mport}, '--dir', $self->_sub('master'),
                  '--save', '', '--appendonly', 'no', @auth);
    $self->_up($self->{mport});
    $self->_spawn('replica', 'redis-server', '--bind', '127.0.0.1',
                  '--port', $self->{rport}, '--dir', $self->_sub('replica'),
                  '--save', '', '--appendonly', 'no', @auth,
                  '--replicaof', '127.0.0.1', $self->{mport});
    $self->_up($self->{rport});
    $self->_until(sub { $self->cli($self->{rport}, 'INFO', 'replication')
                            =~ /master_link_status:up/ },
                  10, 'the replica syncs');

    for my $i (0 .. 2) {
        my $port = $self->{sports}[$i];
        my $dir = $self->_sub("sentinel$i");
        my $conf = "$dir/sentinel.conf";
        open my $f, '>', $conf or die "$conf: $!";
        print $f "port $port\nbind 127.0.0.1\ndir $dir\n",
                 "sentinel monitor $self->{name} 127.0.0.1 $self->{mport} 2\n",
                 "sentinel down-after-milliseconds $self->{name} 1000\n",
                 "sentinel failover-timeout $self->{name} 3000\n",
                 defined $o{pass}
                 ? ("sentinel auth-pass $self->{name} $o{pass}\n",
                    "requirepass $o{pass}\n") : ();
        close $f;
        my @cmd = _sentinel_cmd();
        $self->_spawn("sentinel$i", @cmd, $conf,
                      $cmd[0] eq 'redis-server' ? ('--sentinel') : ());
        $self->_up($port);
    }

    # each sentinel knows the replica and the two others: a failover can
    # be agreed on (quorum 2) from now
    for my $port (@{ $self->{sports} }) {
        $self->_until(sub {
            my $m = $self->cli($port, 'SENTINEL', 'master', $self->{name});
            $m =~ /num-other-sentinels\n2\n/ && $m =~ /num-slaves\n1\n/
        }, 20, "sentinel $port sees the replica and the other sentinels");
    }

    return $self;
}

sub _sub {
    my ($self, $name) = @_;
    my $d = "$self->{dir}/$name";
    mkdir $d;
    return $d;
}

sub _spawn {
    my ($self, $name, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', "$self->{dir}/$name.log";
        open STDERR, '>&', \*STDOUT;
        exec @cmd or exit 127;
    }
    $self->{pids}{$name} = $pid;
    $LIVE{$pid} = 1;
}

sub _up {
    my ($self, $port) = @_;
    $self->_until(sub { IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                              PeerPort => $port) },
                  10, "a server on port $port");
}

sub _until {
    my ($self, $cond, $limit, $what) = @_;
    my $deadline = time + $limit * $SLOW;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    die "not within ${limit}s: $what (logs: $self->{dir})\n";
}

sub _kill {
    my ($self, $name, $sig) = @_;
    my $pid = delete $self->{pids}{$name} or return;
    kill $sig, $pid;
    waitpid $pid, 0;
    delete $LIVE{$pid};
}

sub url {
    my ($self, $name) = @_;
    return 'redis-sentinel://'
           . (defined $self->{pass} ? ":$self->{pass}\@" : '')
           . join(',', map { "127.0.0.1:$_" } @{ $self->{sports} })
           . '#' . ($name // $self->{name});
}

sub sentinel_ports { @{ $_[0]{sports} } }

# where the first sentinel that answers says the master is
sub master_port {
    my ($self) = @_;
    for my $port (@{ $self->{sports} }) {
        my $a = $self->cli($port, 'SENTINEL', 'get-master-addr-by-name',
                           $self->{name});
        return $self->{last_master} = $1 if $a =~ /^\S+\n(\d+)$/;
    }
    return undef;
}

# the master's port as the sentinels last said it (with them down)
sub master_port_cached { $_[0]{last_master} }

# the other server of the two, the master's replica
sub replica_port {
    my ($self) = @_;
    my $m = $self->master_port // 0;
    return $m == $self->{mport} ? $self->{rport} : $self->{mport};
}

# until $cond is true, within $limit s (times PG_TEST_SLOW), else dies
sub wait_until { my $self = shift; $self->_until(@_) }

# SIGKILL the master (whichever server it is now); returns its port
sub kill_master {
    my ($self) = @_;
    my $port = $self->master_port;
    my $name = $port == $self->{mport} ? 'master' : 'replica';
    $self->_kill($name, 'KILL');
    return $port;
}

# until a sentinel names a master other than $old, and it says ROLE master
sub wait_failover {
    my ($self, $old, $limit) = @_;
    $self->_until(sub {
        my $p = $self->master_port;
        defined $p && $p != $old
            && $self->cli($p, 'ROLE') =~ /^master/
    }, $limit // 30, "the sentinels fail over from port $old");
    return $self->master_port;
}

# start the server killed on $port again, as the master's replica, until
# it has synced and every sentinel counts it a replica that is up: the set
# can fail over again (bench/failover.sh's next round)
sub revive {
    my ($self, $port) = @_;
    my $name = $port == $self->{mport} ? 'master' : 'replica';
    my $master = $self->master_port;
    $self->_spawn($name, 'redis-server', '--bind', '127.0.0.1',
                  '--port', $port, '--dir', $self->_sub($name),
                  '--save', '', '--appendonly', 'no',
                  (defined $self->{pass}
                   ? ('--requirepass', $self->{pass},
                      '--masterauth', $self->{pass}) : ()),
                  '--replicaof', '127.0.0.1', $master);
    $self->_up($port);
    $self->_until(sub { $self->cli($port, 'INFO', 'replication')
                            =~ /master_link_status:up/ },
                  20, "port $port syncs from $master");
    for my $sport (@{ $self->{sports} }) {
        $self->_until(sub {
            my $r = $self->cli($sport, 'SENTINEL', 'replicas', $self->{name});
            $r =~ /\n$port\n/ && $r !~ /s_down|o_down|disconnected/
        }, 30, "sentinel $sport sees port $port up, a replica");
    }
}

sub stop_sentinel {
    my ($self, $i) = @_;
    $self->_kill("sentinel$i", 'TERM');
}

# A sentinel outside the set, requirepass $pass: it monitors the master by
# its name but is not given its password, so it can neither watch it nor
# meet the others (they meet through the master), and names the master it
# was started with whatever happens; a client without $pass gets NOAUTH,
# then WRONGPASS. Returns its port; stopped with the rest.
sub stray_sentinel {
    my ($self, $pass) = @_;
    my $port = _free_port();
    my $dir = $self->_sub("stray$port");
    my $conf = "$dir/sentinel.conf";
    open my $f, '>', $conf or die "$conf: $!";
    print $f "port $port\nbind 127.0.0.1\ndir $dir\n",
             "sentinel monitor $self->{name} 127.0.0.1 $self->{mport} 2\n",
             "requirepass $pass\n";
    close $f;
    my @cmd = _sentinel_cmd();
    $self->_spawn("stray$port", @cmd, $conf,
                  $cmd[0] eq 'redis-server' ? ('--sentinel') : ());
    $self->_up($port);
    return $port;
}

sub stop_sentinels {
    my ($self) = @_;
    $self->_kill("sentinel$_", 'TERM') for 0 .. 2;
}

sub stop {
    my ($self) = @_;
    $self->_kill($_, 'TERM') for keys %{ $self->{pids} };
}

# portal-gatectl with PORTAL_GATE_REDIS = the sentinel URL (or $o{url})
sub ctl {
    my ($self, @args) = @_;
    return $self->ctl_url($self->url, @args);
}

sub ctl_url {
    my ($self, $url, @args) = @_;
    local $ENV{PORTAL_GATE_REDIS} = $url;
    local $ENV{USER} = 'tester';
    local $ENV{SUDO_USER} = '';
    local $ENV{PORTAL_GATE_CONF} = '';
    delete local $ENV{PORTAL_GATE_PREFIX};
    delete local $ENV{PORTAL_GATE_ENV};
    my $err = gensym;
    my $pid = open3(my $in, my $out, $err, $PortalGate::Redis::CTL, @args);
    close $in;
    my $o = do { local $/; <$out> } // '';
    my $e = do { local $/; <$err> } // '';
    waitpid $pid, 0;
    return { exit => $? >> 8, out => $o, err => $e };
}

# how many connections the server or sentinel on $port has accepted
# since it started (INFO stats), this question's own included
sub connections_received {
    my ($self, $port) = @_;
    my $info = $self->cli($port, 'INFO', 'stats');
    return $info =~ /^total_connections_received:(\d+)/m ? $1
           : die "no total_connections_received from port $port\n";
}

# the ports process $pid is connected to over TCP (loopback, IPv4), one
# entry per connection: where its connections are
sub tcp_peers {
    my ($self, $pid) = @_;
    my %mine;
    for my $fd (glob "/proc/$pid/fd/*") {
        my $l = readlink($fd) // next;
        $mine{$1} = 1 if $l =~ /^socket:\[(\d+)\]$/;
    }
    open my $f, '<', "/proc/$pid/net/tcp" or return ();
    my @ports;
    while (<$f>) {
        my @c = split ' ';
        # local, remote, state (01: established), ..., inode (the 10th)
        next unless @c > 9 && $c[3] eq '01' && $mine{$c[9]};
        push @ports, hex((split /:/, $c[2])[1]);
    }
    return @ports;
}

# redis-cli against the server or sentinel on $port; its output
sub cli {
    my ($self, $port, @args) = @_;
    my $pid = open3(my $in, my $out, undef, 'redis-cli', '-p', $port,
                    (defined $self->{pass}
                     ? ('-a', $self->{pass}, '--no-auth-warning') : ()),
                    @args);
    close $in;
    my $o = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    chomp $o;
    return $o;
}

sub DESTROY { $_[0]->stop if $$ == $OWNER }

END {
    if ($$ == $OWNER) {
        for my $pid (keys %LIVE) {
            kill 'TERM', $pid;
            waitpid $pid, 0;
        }
    }
}

# --- for t/115 (WAIT, and a write across a failover) ---------------------
#
#   $hs->signal_server($port, 'STOP');    # the server on $port (or CONT)
#   my $h = $hs->ctl_start(@args);        # portal-gatectl in the background
#   $hs->ctl_start_url($url, @args);      # ... with another URL
#   $hs->ctl_running($h);                 # 1 while it runs
#   my $r = $hs->ctl_finish($h, $limit);  # {exit, out, err}; dies past it

# a server left stopped (a test died while it was held) would never take
# the TERM of the END above, which waits for it: let it go on first (END
# blocks run last-defined first)
my %STOPPED;
END { kill 'CONT', keys %STOPPED if $$ == $OWNER && %STOPPED }

sub signal_server {
    my ($self, $port, $sig) = @_;
    my $name = $port == $self->{mport} ? 'master' : 'replica';
    my $pid = $self->{pids}{$name} or die "no server on port $port\n";
    $STOPPED{$pid} = 1 if $sig eq 'STOP';
    kill $sig, $pid;
}


sub ctl_start {
    my ($self, @args) = @_;
    return $self->ctl_start_url($self->url, @args);
}

# the same with PORTAL_GATE_REDIS = $url
sub ctl_start_url {
    my ($self, $url, @args) = @_;
    my $n = ++$self->{bg};
    my $h = { out => "$self->{dir}/ctl$n.out", err => "$self->{dir}/ctl$n.err" };
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $ENV{PORTAL_GATE_REDIS} = $url;
        $ENV{USER} = 'tester';
        $ENV{SUDO_USER} = '';
        $ENV{PORTAL_GATE_CONF} = '';
        delete $ENV{PORTAL_GATE_PREFIX};
        delete $ENV{PORTAL_GATE_ENV};
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $h->{out};
        open STDERR, '>', $h->{err};
        exec $PortalGate::Redis::CTL, @args or exit 127;
    }
    $h->{pid} = $pid;
    $LIVE{$pid} = 1;
    return $h;
}

sub ctl_running {
    my ($self, $h) = @_;
    return 0 if exists $h->{status};
    require POSIX;
    my $w = waitpid $h->{pid}, POSIX::WNOHANG();
    return 1 if $w == 0;
    $h->{status} = $?;
    delete $LIVE{$h->{pid}};
    return 0;
}

sub ctl_finish {
    my ($self, $h, $limit) = @_;
    $self->_until(sub { !$self->ctl_running($h) }, $limit // 30,
                  'portal-gatectl ends');
    my $slurp = sub { open my $f, '<', $_[0] or return '';
                      local $/; my $t = <$f>; $t // '' };
    return { exit => $h->{status} >> 8, out => $slurp->($h->{out}),
             err => $slurp->($h->{err}) };
}

1;
