package PortalGate::EdgeMetrics;

# The edge's portal_gate_metrics in the tests: the names of its counters'
# series and what changed between two scrapes.
#
#   my $m = counter_samples(metrics($text));   # the two counter families
#   $m->{dec('production', 'f', 'on', 'allowed')}     # a decision's count
#   $m->{resp('production', 'f', 'on', '2xx')}        # a response class's
#   my $d = delta($before, $after);   # series => what they gained, if any

use strict;
use warnings;

use Exporter qw(import);
our @EXPORT_OK = qw(dec resp counter_samples delta);

sub dec {
    my ($env, $flag, $decision, $reason) = @_;
    return qq(portal_gate_decisions_total{env="$env",flag="$flag",)
         . qq(decision="$decision",reason="$reason"});
}

sub resp {
    my ($env, $flag, $decision, $class) = @_;
    return qq(portal_gate_responses_total{env="$env",flag="$flag",)
         . qq(decision="$decision",class="$class"});
}

# the samples of portal_gate_decisions_total and _responses_total
sub counter_samples {
    my ($m) = @_;
    return { map { $_ => $m->{$_} }
             grep { /^portal_gate_(?:decisions|responses)_total\{/ } keys %$m };
}

# the series that gained between two sets of samples, and by how much
sub delta {
    my ($before, $after) = @_;
    my %d;
    for (keys %$after) {
        my $x = $after->{$_} - ($before->{$_} // 0);
        $d{$_} = $x if $x;
    }
    return \%d;
}

1;
