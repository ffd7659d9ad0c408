package PortalGate::Test;

# The integration test harness: runs Debian's nginx with the portal_gate
# module on loopback, in a scratch folder of its own, and talks to it.
#
#   my $ng = PortalGate::Test->new(workers => 1, zone => '4m', state => 1,
#                                  server => $snippet, http => $snippet);
#   $ng->start;
#   my $res = $ng->get('/portal/', company => '42');
#   $ng->put_snapshot({revision => 1, environments => {...}});
#   $ng->no_bad_log_lines;
#
# The generated nginx.conf has one main server on $ng->port with
#   portal_gate_company $http_x_company_id;
#   location /portal-gate/ { portal_gate_api; }
# plus the `server` snippet inside it and the `http` snippet beside it.
# In snippets, %%PORT%% is the main port, %%PORT1%%..%%PORTn%% the extra
# ports asked for with ports => n, and %%DIR%% the scratch folder.
#
# Options of new(): workers, zone (size), zone_name, state (0: no state=),
# reuseport, server, http, api_extra (inside the API location), ports (how
# many extra ports), files ({relative path => content} in the folder),
# modules ([paths] of other dynamic modules, loaded before ours).
#
# Methods: start, stop, restart(%options), reload(%options) (HUP, waits for
# the new workers), hup (the same, with nginx.conf as it is on disk),
# workers (their pids), holder($sock) (the worker that accepted the
# test's connection $sock), request / get (one connection each), api,
# put_snapshot, status, snapshot, evaluate (GET eval), error_log,
# log_lines(qr//), no_bad_log_lines, dir, port, extra_port(n),
# state_file. Functions: murmur3_32, bucket, find_companies, nginx_t,
# free_port.
#
# Every nginx started here is stopped at the end, even when a test dies.
# PG_TEST_KEEP=1 keeps the scratch folders for a post-mortem.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);

use Exporter qw(import);
our @EXPORT_OK = qw(murmur3_32 bucket find_companies nginx_t
                    require_module module_path free_port);

our $NGINX = $ENV{PORTAL_GATE_NGINX} || '/usr/sbin/nginx';

# Waits (start, reload, stop, I/O) are limits, not timings: a slow nginx,
# such as one under valgrind, multiplies them (PG_TEST_SLOW=6).
our $SLOW = ($ENV{PG_TEST_SLOW} // '') =~ /^\d+(?:\.\d+)?$/
          && $ENV{PG_TEST_SLOW} > 0 ? $ENV{PG_TEST_SLOW} : 1;

my $ROOT = abs_path(dirname(__FILE__) . '/../../..');
my %LIVE;       # pid => instance: everything still to stop at exit
my $OWNER = $$; # a forked child (see t/50-workers.t) must not stop nginx

my $JSON = JSON::PP->new->canonical->utf8;


sub module_path {
    return $ENV{PORTAL_GATE_MODULE}
        || "$ROOT/build/ngx_http_portal_gate_module.so";
}


# Skip the whole file when there is nothing to test with.
sub require_module {
    plan skip_all => "$NGINX not found" unless -x $NGINX;
    plan skip_all => module_path() . ' not built: run make module'
        unless -f module_path();
}


# ---- the hash, to pick companies on either side of a rollout threshold

sub _mul32 {
    my ($x, $y) = @_;
    # split y so that no product leaves 64-bit integers
    return (($x * ($y & 0xffff))
            + ((($x * ($y >> 16)) & 0xffff) << 16)) & 0xffffffff;
}

sub _rotl32 {
    my ($x, $r) = @_;
    return (($x << $r) | ($x >> (32 - $r))) & 0xffffffff;
}

sub murmur3_32 {
    my ($data, $seed) = @_;
    utf8::encode($data) if utf8::is_utf8($data);

    my ($c1, $c2) = (0xcc9e2d51, 0x1b873593);
    my $len = length $data;
    my $h = ($seed // 0) & 0xffffffff;
    my $nblocks = int($len / 4);

    for my $i (0 .. $nblocks - 1) {
        my $k = unpack 'V', substr($data, 4 * $i, 4);
        $k = _mul32(_rotl32(_mul32($k, $c1), 15), $c2);
        $h = _rotl32($h ^ $k, 13);
        $h = (_mul32($h, 5) + 0xe6546b64) & 0xffffffff;
    }

    my @tail = map { ord } split //, substr($data, 4 * $nblocks);
    my $k = 0;
    $k ^= $tail[2] << 16 if @tail >= 3;
    $k ^= $tail[1] << 8  if @tail >= 2;
    if (@tail >= 1) {
        $k ^= $tail[0];
        $h ^= _mul32(_rotl32(_mul32($k, $c1), 15), $c2);
    }

    $h ^= $len;
    $h ^= $h >> 16;
    $h = _mul32($h, 0x85ebca6b);
    $h ^= $h >> 13;
    $h = _mul32($h, 0xc2b2ae35);
    $h ^= $h >> 16;

    return $h;
}

# The flag's bucket for a company: the salt defaults to the flag's name.
sub bucket {
    my ($salt, $company) = @_;
    return murmur3_32("$salt:$company") % 10000;
}

# $n company ids "c1", "c2", ... whose bucket for $salt passes $pred.
sub find_companies {
    my ($salt, $n, $pred) = @_;
    my @found;
    for (my $i = 1; @found < $n; $i++) {
        die "no company found for $salt" if $i > 1_000_000;
        push @found, "c$i" if $pred->(bucket($salt, "c$i"));
    }
    return @found;
}


# ---- scratch folders, ports and ownership

sub _scratch {
    my $dir = tempdir('portal-gate-XXXXXX', TMPDIR => 1,
                      CLEANUP => !$ENV{PG_TEST_KEEP});
    chmod 0755, $dir or die "chmod $dir: $!";
    diag("scratch folder: $dir") if $ENV{PG_TEST_KEEP};
    return $dir;
}

# A free TCP port on 127.0.0.1 (PortalGate::Scrape exports this one too;
# PortalGate::Pebble and PortalGate::Redis take theirs from it). It is free
# when asked, and taken only when nginx starts: the kernel may give the same
# port to the next ask meanwhile (2 in 1,000 instances of 8 ports had a
# port twice: t/34's "gate" server then shared the main server's port, and
# its requests went to the main server). So no port is given twice in a
# test.
my %GIVEN;

sub free_port {
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => 0, Proto => 'tcp',
                                      Listen => 1)
            or die "cannot find a free port: $!";
        my $port = $s->sockport;
        close $s;
        return $port unless $GIVEN{$port}++;
    }
    die "cannot find a free port that was not given already\n";
}

# Folders the workers write: theirs when the master runs as root.
sub _worker_owned {
    my (@dirs) = @_;
    make_path(@dirs);
    return if $> != 0;
    my $uid = getpwnam('nobody');
    my $gid = getgrnam('nogroup') // (getpwnam('nobody'))[3];
    chown $uid, $gid, @dirs or die "chown @dirs: $!";
}

sub _write_file {
    my ($path, $content) = @_;
    make_path(dirname($path));
    open my $fh, '>:raw', $path or die "cannot write $path: $!";
    print {$fh} $content;
    close $fh or die "cannot write $path: $!";
}

sub _read_file {
    my ($path) = @_;
    open my $fh, '<:raw', $path or return undef;
    local $/;
    my $s = <$fh>;
    return $s // '';
}


# ---- the instance

sub new {
    my ($class, %o) = @_;

    my $self = bless {
        workers   => $o{workers} // 1,
        zone      => $o{zone} // '4m',
        zone_name => $o{zone_name} // 'portal_gate',
        state     => $o{state} // 1,
        reuseport => $o{reuseport} // 0,
        server    => $o{server} // '',
        http      => $o{http} // '',
        api_extra => $o{api_extra} // '',
        files     => $o{files} // {},
        modules   => $o{modules} // [],
        dir       => _scratch(),
        port      => free_port(),
    }, $class;

    $self->{ports} = [map { free_port() } 1 .. ($o{ports} // 0)];

    my $d = $self->{dir};
    _worker_owned("$d/state", map { "$d/tmp/$_" }
                                  qw(client_body proxy fastcgi uwsgi scgi));

    for my $f (sort keys %{ $self->{files} }) {
        _write_file("$d/$f", $self->{files}{$f});
    }

    return $self;
}

sub dir        { $_[0]{dir} }
sub port       { $_[0]{port} }
sub extra_port { $_[0]{ports}[$_[1] - 1] // die "no extra port $_[1]" }
sub state_file { "$_[0]{dir}/state/state.json" }
sub pid        { $_[0]{pid} }

sub _expand {
    my ($self, $text) = @_;
    $text =~ s/%%PORT%%/$self->{port}/g;
    $text =~ s/%%PORT(\d+)%%/$self->extra_port($1)/ge;
    $text =~ s/%%DIR%%/$self->{dir}/g;
    return $text;
}

sub _conf {
    my ($self) = @_;
    my $d = $self->{dir};
    my $module = module_path();
    my $state = $self->{state} ? ' state=' . $self->state_file : '';
    my $reuseport = $self->{reuseport} ? ' reuseport' : '';
    my $others = join '', map { "load_module $_;\n" } @{ $self->{modules} };

    return $self->_expand(<<"CONF");
${others}load_module $module;

daemon off;
master_process on;
worker_processes $self->{workers};
pid $d/nginx.pid;
error_log $d/error.log info;

events {
    worker_connections 1024;
}

http {
    access_log $d/access.log;
    client_body_temp_path $d/tmp/client_body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;

    portal_gate_zone zone=$self->{zone_name}:$self->{zone}$state;

    server {
        listen 127.0.0.1:$self->{port}$reuseport;
        server_name localhost;
        portal_gate_company \$http_x_company_id;

        location /portal-gate/ {
            portal_gate_api;
            $self->{api_extra}
        }

$self->{server}
    }

$self->{http}
}
CONF
}

sub _write_conf {
    my ($self) = @_;
    _write_file("$self->{dir}/nginx.conf", $self->_conf);
}

# pids of the master's live children (its workers)
sub workers {
    my ($self) = @_;
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $s = _read_file($stat) // next;
        next unless $s =~ /^(\d+) \(.*\) (\S) (\d+) /s;
        push @pids, $1 if $3 == $self->{pid} && $2 ne 'Z';
    }
    @pids = sort { $a <=> $b } @pids;
    return @pids;
}

# The worker that has accepted the connection of the test's client socket
# $sock (a pid), or undef while none has: the kernel completes a TCP
# handshake before any worker accepts, so a request sent is not yet one
# a worker took. From /proc: the server side's socket inode in
# /proc/net/tcp, then which worker has it open.
sub holder {
    my ($self, $sock) = @_;
    my ($port, $peer) = map { sprintf '%04X', $_ } $self->{port}, $sock->sockport;
    my $inode;
    for (split /\n/, _read_file('/proc/net/tcp') // '') {
        my @f = split ' ';
        next unless @f > 9 && $f[1] eq "0100007F:$port"
                    && $f[2] eq "0100007F:$peer";
        $inode = $f[9];
        last;
    }
    return undef unless $inode;
    for my $pid ($self->workers) {
        for my $fd (glob "/proc/$pid/fd/*") {
            return $pid if (readlink($fd) // '') eq "socket:[$inode]";
        }
    }
    return undef;
}

sub _worker_count {
    my ($self) = @_;
    my @w = $self->workers;
    return scalar @w;
}

sub _died {
    my ($self, $what) = @_;
    my $out = _read_file("$self->{dir}/stderr.log") // '';
    my $log = $self->error_log;
    die "$what\n--- nginx stderr:\n$out\n--- error.log:\n$log\n";
}

sub _accepts {
    my ($self) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $self->{port},
                                  Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

# Start nginx; returns once the port accepts and every worker is up.
sub start {
    my ($self) = @_;
    die "nginx already running\n" if $self->{pid};

    $self->_write_conf;
    my $d = $self->{dir};

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$d/stderr.log";
        open STDERR, '>&', \*STDOUT;
        { exec $NGINX, '-p', "$d/", '-c', "$d/nginx.conf" }
        POSIX::_exit(127);
    }

    $self->{pid} = $pid;
    $LIVE{$pid} = $self;

    my $deadline = time + 5 * $SLOW;
    until ($self->_worker_count == $self->{workers} && $self->_accepts) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $LIVE{$pid};
            delete $self->{pid};
            $self->_died("nginx exited at start (status $?)");
        }
        $self->_died("nginx did not come up within " . 5 * $SLOW . " s") if time > $deadline;
        sleep 0.02;
    }

    return $self;
}

# Stop nginx: QUIT (graceful), then TERM and KILL if it lingers.
sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    local $?;

    for my $step (['QUIT', 10], ['TERM', 5], ['KILL', 5]) {
        kill $step->[0], $pid;
        my $deadline = time + $step->[1] * $SLOW;
        while (time < $deadline) {
            if (waitpid($pid, WNOHANG) != 0) {
                delete $LIVE{$pid};
                return;
            }
            sleep 0.02;
        }
        warn "nginx $pid ignored SIG$step->[0]\n";
    }
    delete $LIVE{$pid};
}

# Change options (zone, server, http, ...) and reload with HUP; returns
# when a whole new set of workers runs and the old ones have gone. With
# old_busy => 1, an old worker still has a request to finish: return once
# the new workers run.
sub reload {
    my ($self, %o) = @_;
    die "nginx not running\n" unless $self->{pid};
    my $old_busy = delete $o{old_busy};

    for my $k (keys %o) {
        die "unknown option $k\n" unless exists $self->{$k};
        $self->{$k} = $o{$k};
    }
    $self->_write_conf;
    return $self->hup(old_busy => $old_busy);
}

# HUP with nginx.conf as it is on disk (a test that edited it by hand);
# returns as reload does: once a whole new set of workers runs and the old
# ones have gone (with old_busy => 1, once the new ones run). A refused
# config never gets new workers: for that, HUP and wait for its [emerg].
sub hup {
    my ($self, %o) = @_;
    die "nginx not running\n" unless $self->{pid};
    my $old_busy = $o{old_busy};

    my %old = map { $_ => 1 } $self->workers;
    kill 'HUP', $self->{pid};

    my $deadline = time + 10 * $SLOW;
    while (1) {
        my @now = $self->workers;
        my @new = grep { !$old{$_} } @now;
        last if $old_busy && @new == $self->{workers};
        last if @now == $self->{workers} && !grep { $old{$_} } @now;
        $self->_died("nginx did not reload within " . 10 * $SLOW . " s") if time > $deadline;
        sleep 0.02;
    }

    return $self;
}

sub restart {
    my ($self, %o) = @_;
    $self->stop;
    for my $k (keys %o) {
        die "unknown option $k\n" unless exists $self->{$k};
        $self->{$k} = $o{$k};
    }
    return $self->start;
}

sub DESTROY {
    my ($self) = @_;
    $self->stop if $self->{pid} && $$ == $OWNER;
}

END {
    if ($$ == $OWNER) {
        my $status = $?;
        $_->stop for values %LIVE;
        $? = $status;
    }
}


# ---- logs

sub error_log {
    my ($self) = @_;
    return _read_file("$self->{dir}/error.log") // '';
}

# Lines of the error log matching $re.
sub log_lines {
    my ($self, $re) = @_;
    return grep { /$re/ } split /\n/, $self->error_log;
}

sub no_bad_log_lines {
    my ($self, $name) = @_;
    my @bad = $self->log_lines(qr/\[(?:crit|alert|emerg)\]/);
    ok(!@bad, $name // 'error log has no [crit], [alert] or [emerg] line')
        or diag(join "\n", @bad);
}


# ---- HTTP: a raw HTTP/1.1 client, one connection per request

# request(METHOD, PATH, headers => {...}, body => STR, chunked => SIZE,
#         host => NAME, company => ID, port => N, timeout => SECONDS)
# returns {status, headers => {lowercase name => value}, content, closed}
# where closed says that nginx closed the connection (Connection: close)
sub request {
    my ($self, $method, $path, %o) = @_;

    my $port = $o{port} // $self->{port};
    my %h = %{ $o{headers} // {} };
    $h{'X-Company-Id'} = $o{company} if defined $o{company};

    my $req = "$method $path HTTP/1.1\r\n"
            . 'Host: ' . ($o{host} // 'localhost') . "\r\n"
            . "Connection: close\r\n";
    $req .= "$_: $h{$_}\r\n" for sort keys %h;

    my $body = $o{body};
    if (defined $body && $o{chunked}) {
        $req .= "Transfer-Encoding: chunked\r\n\r\n";
        for (my $i = 0; $i < length $body; $i += $o{chunked}) {
            my $c = substr($body, $i, $o{chunked});
            $req .= sprintf("%x\r\n%s\r\n", length $c, $c);
        }
        $req .= "0\r\n\r\n";

    } elsif (defined $body) {
        $req .= 'Content-Length: ' . length($body) . "\r\n\r\n$body";

    } else {
        $req .= "\r\n";
    }

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 5 * $SLOW)
        or die "connect 127.0.0.1:$port: $!\n";
    binmode $s;

    local $SIG{PIPE} = 'IGNORE';
    my $sel = IO::Select->new($s);

    for (my $off = 0; $off < length $req; ) {
        # a server that answers early may stop reading: then go read
        last unless $sel->can_write(10 * $SLOW);
        my $n = syswrite($s, $req, 65536, $off);
        last unless $n;
        $off += $n;
    }

    # read to EOF: a server that never closes (a leaked request) times out
    my ($raw, $closed) = ('', 0);
    while ($sel->can_read(($o{timeout} // 10) * $SLOW)) {
        my $n = sysread($s, $raw, 65536, length $raw);
        unless ($n) {
            $closed = 1;
            last;
        }
    }
    close $s;

    my $res = _parse_response($raw);
    $res->{closed} = $closed;
    return $res;
}

sub _parse_response {
    my ($raw) = @_;

    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my ($status_line, @lines) = split /\r\n/, $head // '';
    my ($status) = ($status_line // '') =~ m{^HTTP/1\.[01] (\d{3})};

    my %headers;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $k = lc $k;
        $headers{$k} = exists $headers{$k} ? "$headers{$k}, $v" : $v;
    }

    $body //= '';
    if (($headers{'transfer-encoding'} // '') =~ /chunked/i) {
        my $plain = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $n = hex $1;
            last if $n == 0;
            $plain .= substr($body, 0, $n, '');
            $body =~ s/^\r\n//;
        }
        $body = $plain;
    }

    return {status => $status // 0, headers => \%headers, content => $body,
            raw => $raw};
}

sub get {
    my ($self, $path, %o) = @_;
    return $self->request('GET', $path, %o);
}


# ---- the API

# api(METHOD, PATH under /portal-gate/, BODY, %request_options)
# returns the response with {json} decoded (undef when it is not JSON);
# prefix => '/other-api/' talks to another portal_gate_api location
sub api {
    my ($self, $method, $path, $body, %o) = @_;
    my $prefix = delete $o{prefix} // '/portal-gate/';
    my $res = $self->request($method, "$prefix$path", body => $body, %o);
    $res->{json} = eval { $JSON->decode($res->{content}) };
    return $res;
}


# PUT a snapshot: a Perl hash (encoded here) or a raw string
sub put_snapshot {
    my ($self, $snap, %o) = @_;
    my $body = ref $snap ? $JSON->encode($snap) : $snap;
    return $self->api('PUT', 'snapshot', $body, %o);
}

sub status {
    my ($self) = @_;
    my $res = $self->api('GET', 'status');
    die "GET status: $res->{status} $res->{content}\n"
        unless $res->{status} == 200 && $res->{json};
    return $res->{json};
}

sub snapshot {
    my ($self) = @_;
    my $res = $self->api('GET', 'snapshot');
    die "GET snapshot: $res->{status} $res->{content}\n"
        unless $res->{status} == 200 && $res->{json};
    return $res->{json};
}

# GET eval: returns the decoded answer (with {status} added)
sub evaluate {
    my ($self, %q) = @_;
    my $qs = join '&', map { "$_=" . _uri_escape($q{$_}) } sort keys %q;
    my $res = $self->api('GET', "eval?$qs");
    my $json = $res->{json} // {};
    return {%$json, _status => $res->{status}};
}

sub _uri_escape {
    my ($s) = @_;
    utf8::encode($s) if utf8::is_utf8($s);
    $s =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    return $s;
}


# ---- nginx -t

# nginx_t($http_block_body, %o): (exit code, output, scratch folder) of
# nginx -t on a config whose http block holds the given text (%%DIR%%
# expanded; %%DIR%%/state exists). With main => 1, the text is the whole
# main context after load_module.
sub nginx_t {
    my ($text, %o) = @_;
    my $d = _scratch();
    make_path("$d/tmp", "$d/state");
    $text =~ s/%%DIR%%/$d/g;

    my $module = module_path();
    my $conf = "load_module $module;\n"
             . "pid $d/nginx.pid;\nerror_log $d/error.log info;\n";

    if ($o{main}) {
        $conf .= $text;

    } else {
        $conf .= <<"CONF";
events { }
http {
    access_log $d/access.log;
    client_body_temp_path $d/tmp/client_body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
$text
}
CONF
    }

    _write_file("$d/nginx.conf", $conf);

    # timeout: a hang (a FIFO at a path nginx reads) fails, not blocks
    my $limit = $o{timeout} // 60;
    my $out = qx{timeout $limit $NGINX -t -p $d/ -c $d/nginx.conf 2>&1};
    return ($? >> 8, $out, $d);
}


1;
