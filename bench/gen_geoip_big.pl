#!/usr/bin/perl
#
# gen_geoip_big.pl — builds a GeoLite2-sized, GeoLite2-City-compatible MaxMind
# DB for benchmarks: by default about 1,950,000 networks (90% IPv4, 10% IPv6),
# 22 MB, as deep and as scattered as a real City database, so that replay's
# GeoIP cost is measured on a tree like the one operators deploy rather than
# on the 60-network test database. (A real GeoLite2-City is 60-70 MB: its
# records also carry postal codes, subdivisions and translated names, which
# this generator does not invent.)
#
#   perl bench/gen_geoip_big.pl [--networks N] [--ipv6-share F] [--seed S]
#                               [--locations-per-city K] [OUT.mmdb]
#
# --networks is the number of networks cut before holes and the cities.csv
# rows; OUT defaults to ${TMPDIR:-/tmp}/GeoLite2-City-Big.mmdb. The file is a
# generated artefact: never commit it. With the defaults it takes about 2.5
# minutes and 1 GB of memory (MaxMind::DB::Writer builds the whole tree in
# memory).
#
# What it promises:
# - Deterministic: the same options (seed included) and the same
#   testdata/geoip/cities.csv give the same bytes (Perl's own drand48 since
#   5.20, fixed build epoch, sorted map keys).
# - The public IPv4 space (1.0.0.0-223.255.255.255 without the reserved and
#   private ranges) is cut into networks by random binary splits: a network
#   chosen uniformly among the current ones is halved, again and again, so
#   splits cluster where there already were splits, as in real allocations.
#   With the defaults three quarters of the IPv4 networks are /20../28 and
#   a quarter /29../32, in runs, while large blocks stay whole elsewhere;
#   about 2% are left out (holes, as unallocated space is in a real
#   database). IPv6 networks are cut the same way from a few hundred /28s
#   inside the five RIR /12s, down to /64.
# - Every record has GeoLite2-City's shape (city, continent, country,
#   location, registered_country) and a real city, country and time zone from
#   testdata/geoip/cities.csv. Coordinates are the city's centre moved by up
#   to 20 km (a few thousand points per city, like the postal-code centroids
#   of a real database, so the data section holds many distinct records);
#   accuracy_radius takes GeoLite2's values. The names maps carry GeoLite2's
#   eight language keys, each holding the English name: the benchmark
#   measures decoding, not translation.
#   About 3% of the networks are country-level (no city, 500/1000 km) and 1%
#   have a country and no location, as anonymous-proxy records do.
#   Neighbouring networks mostly share a city, as they do in real data.
# - Every row of testdata/geoip/cities.csv is inserted last with the record
#   testdata/geoip/gen_mmdb.pl gives it (names maps with the eight language
#   keys, the same values), so the documentation ranges, the demo and the
#   golden detection test resolve as with the test database.
# - At the end it prints the file size, the number of networks with a record
#   and the node count, and (unless --no-verify) looks up the first and last
#   address of 2,000 generated networks with MaxMind::DB::Reader and checks
#   the city it gets back.
#
# Needs Debian's libmaxmind-db-writer-perl and libmaxmind-db-reader-perl.
use strict;
use warnings;
use utf8;

use File::Basename qw(dirname);
use File::Spec;
use Getopt::Long qw(GetOptions);
use MaxMind::DB::Writer::Tree;
use Time::HiRes qw(time);

binmode STDOUT, ':encoding(UTF-8)';
binmode STDERR, ':encoding(UTF-8)';

my %opt = (
    networks             => 2_000_000,
    'ipv6-share'         => 0.10,
    seed                 => 20261129,
    'locations-per-city' => 4000,
    verify               => 1,
);
my $usage = "usage: $0 [--networks N] [--ipv6-share F] [--seed S] [--locations-per-city K] "
    . "[--no-verify] [OUT.mmdb]\n";
# Bad usage exits 2, as the project's commands do; a failure while building
# dies (non-zero).
sub usage_error { print STDERR "$0: $_[0]\n" if @_; print STDERR $usage; exit 2 }
GetOptions(\%opt, 'networks=i', 'ipv6-share=f', 'seed=i', 'locations-per-city=i',
    'verify!', 'help|h')
    or usage_error();
if ($opt{help}) {
    print $usage;
    exit 0;
}
$opt{networks} >= 1000 or usage_error('--networks must be at least 1000');
$opt{'ipv6-share'} >= 0 && $opt{'ipv6-share'} < 1 or usage_error('--ipv6-share must be in [0, 1)');
$opt{'locations-per-city'} >= 1 or usage_error('--locations-per-city must be at least 1');
my $out = shift(@ARGV) // File::Spec->catfile($ENV{TMPDIR} || '/tmp', 'GeoLite2-City-Big.mmdb');
@ARGV and usage_error('one output path only');

my $csv = File::Spec->catfile(dirname(__FILE__), '..', 'testdata', 'geoip', 'cities.csv');
# 2026-01-01T00:00:00Z, as the test databases (reproducible output).
my $build_epoch = $ENV{SOURCE_DATE_EPOCH} // 1767225600;
my @languages = qw(de en es fr ja pt-BR ru zh-CN);    # GeoLite2's
# GeoLite2's accuracy_radius values and roughly how often a city-level
# record has each.
my @radii = ([1, 3], [5, 12], [10, 15], [20, 25], [50, 20], [100, 15], [200, 6], [500, 3],
    [1000, 1]);

my $t0 = time;
sub progress { printf STDERR "gen_geoip_big: %-28s %6.1fs\n", $_[0], time - $t0 }

srand($opt{seed});

# ---- source cities ------------------------------------------------------
# The continent table is the one testdata/geoip/gen_mmdb.pl uses (that script
# is the owner of the CSV's meaning; this one only reads the CSV, which
# gen_mmdb.pl has already validated).
my %continents = (
    AF => [ 6255146, 'Africa' ],
    AS => [ 6255147, 'Asia' ],
    EU => [ 6255148, 'Europe' ],
    NA => [ 6255149, 'North America' ],
    OC => [ 6255151, 'Oceania' ],
    SA => [ 6255150, 'South America' ],
);
my %continent_of = (
    AE => 'AS', AR => 'SA', AU => 'OC', BR => 'SA', CA => 'NA', CH => 'EU',
    CN => 'AS', DE => 'EU', EG => 'AF', ES => 'EU', FR => 'EU', GB => 'EU',
    HK => 'AS', IE => 'EU', IN => 'AS', JP => 'AS', KE => 'AF', KR => 'AS',
    MX => 'NA', NG => 'AF', NL => 'EU', NZ => 'OC', PL => 'EU', RU => 'EU',
    SE => 'EU', SG => 'AS', TR => 'EU', US => 'NA', ZA => 'AF',
);
my %types = (
    accuracy_radius    => 'uint16',
    city               => 'map',
    code               => 'utf8_string',
    continent          => 'map',
    country            => 'map',
    geoname_id         => 'uint32',
    iso_code           => 'utf8_string',
    latitude           => 'double',
    location           => 'map',
    longitude          => 'double',
    names              => 'map',
    registered_country => 'map',
    time_zone          => 'utf8_string',
    (map { $_ => 'utf8_string' } @languages),
);

sub read_cities {
    open my $fh, '<:encoding(UTF-8)', $csv or die "$csv: $!\n";
    my $header = <$fh> // die "$csv: empty\n";
    $header =~ s/\r?\n\z//;
    my @cols = split /,/, $header, -1;
    my @rows;
    while (my $line = <$fh>) {
        $line =~ s/\r?\n\z//;
        next if $line eq '';
        my %r;
        @r{@cols} = split /,/, $line, -1;
        $continent_of{ $r{country_iso} } or die "$csv:$.: no continent for $r{country_iso}\n";
        push @rows, \%r;
    }
    return @rows;
}

my @csv_rows = read_cities();
my (%seen_city, @cities, %cities_of, @country_level, @country_only);
for my $r (@csv_rows) {
    if ($r->{city} ne '') {
        next if $seen_city{"$r->{city}/$r->{country_iso}"}++;
        push @cities, $r;
        push @{ $cities_of{ $r->{country_iso} } }, $r;
    } elsif ($r->{lat} ne '') {
        push @country_level, $r;
    } else {
        push @country_only, $r;
    }
}
@cities or die "$csv: no city rows\n";
my @countries = sort keys %cities_of;
# A country-only record (no location) needs only a country: take any.
@country_only = map { { country_iso => $_, country_name => $cities_of{$_}[0]{country_name} } }
    @countries unless @country_only;

# Shared per string: 90,000 records would otherwise hold 90,000 copies.
my %names_cache;
sub names {
    my $n = shift;
    return $names_cache{$n} //= { map { $_ => $n } @languages };
}

sub country_map {
    my ($r) = @_;
    return { iso_code => $r->{country_iso}, names => names($r->{country_name}) };
}

sub base_record {
    my ($r) = @_;
    my $cc = $continent_of{ $r->{country_iso} };
    my ($cid, $cname) = @{ $continents{$cc} };
    return {
        continent          => { code => $cc, geoname_id => $cid, names => names($cname) },
        country            => country_map($r),
        registered_country => country_map($r),
    };
}

# The test database's record for a CSV row (same fields as gen_mmdb.pl's,
# but with the eight-language names maps).
sub csv_record {
    my ($r) = @_;
    my $rec = base_record($r);
    if ($r->{city} ne '') {
        $rec->{city} = { names => names($r->{city}) };
        $rec->{city}{geoname_id} = 0 + $r->{geoname_id} if $r->{geoname_id} ne '';
    }
    if ($r->{lat} ne '') {
        $rec->{location} = {
            latitude        => 0 + $r->{lat},
            longitude       => 0 + $r->{lon},
            accuracy_radius => 0 + $r->{radius_km},
            time_zone       => $r->{time_zone},
        };
    }
    return $rec;
}

my $radius_total = 0;
$radius_total += $_->[1] for @radii;
sub pick_radius {
    my $x = rand($radius_total);
    for my $p (@radii) {
        return $p->[0] if ($x -= $p->[1]) < 0;
    }
    return $radii[-1][0];
}

# One of a city's K points, with its radius; the same (city, point) always
# gives the same record, so the data section holds at most K per city.
my %point_cache;
sub city_point_record {
    my ($r, $k) = @_;
    my $key = "$r->{city}/$r->{country_iso}/$k";
    return $point_cache{$key} if $point_cache{$key};
    my $pi = 4 * atan2(1, 1);
    my $dist = 20 * sqrt(rand());    # km, uniform over the disc
    my $bearing = rand(2 * $pi);
    my $lat = $r->{lat} + $dist * cos($bearing) / 111.2;
    my $lon = $r->{lon} + $dist * sin($bearing) / (111.2 * cos($r->{lat} * $pi / 180));
    $lon -= 360 if $lon > 180;
    $lon += 360 if $lon < -180;
    my $rec = base_record($r);
    $rec->{city} = { names => names($r->{city}) };
    $rec->{city}{geoname_id} = 0 + $r->{geoname_id} if $r->{geoname_id} ne '';
    $rec->{location} = {
        # Four decimals, as GeoLite2 publishes them.
        latitude        => 0 + sprintf('%.4f', $lat),
        longitude       => 0 + sprintf('%.4f', $lon),
        accuracy_radius => pick_radius(),
        time_zone       => $r->{time_zone},
    };
    return $point_cache{$key} = $rec;
}

# Records along the address space: runs of networks share a city, a new run
# stays in the country 70% of the time.
my $cur_city = $cities[0];
sub next_record {
    my $x = rand();
    if ($x < 0.01) {
        return base_record($country_only[ int(rand(@country_only)) ]);
    }
    if ($x < 0.04 && @country_level) {
        return csv_record($country_level[ int(rand(@country_level)) ]);
    }
    if (rand() < 0.35) {
        my $same = $cities_of{ $cur_city->{country_iso} };
        $cur_city = rand() < 0.7 ? $same->[ int(rand(@$same)) ] : $cities[ int(rand(@cities)) ];
    }
    return city_point_record($cur_city, int(rand($opt{'locations-per-city'})));
}

# ---- networks -----------------------------------------------------------
# IPv4 networks are [first address as an integer, prefix length]; IPv6 ones
# carry only the upper 64 bits (no network here is longer than /64).
my @reserved4 = map {
    my ($a, $p) = split m{/};
    my @o = split /\./, $a;
    [ (($o[0] << 24) | ($o[1] << 16) | ($o[2] << 8) | $o[3]), $p ]
} qw(0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12
     192.0.0.0/24 192.0.2.0/24 192.88.99.0/24 192.168.0.0/16 198.18.0.0/15
     198.51.100.0/24 203.0.113.0/24 224.0.0.0/3);

sub last4 { $_[0] + (1 << (32 - $_[1])) - 1 }

sub reserved_overlap {
    my ($start, $plen) = @_;
    my $end = last4($start, $plen);
    for my $r (@reserved4) {
        my ($rs, $re) = ($r->[0], last4(@$r));
        next if $re < $start || $rs > $end;
        return 2 if $rs <= $start && $re >= $end;    # inside: drop
        return 1;                                    # straddles: split further
    }
    return 0;
}

# Halves networks picked uniformly until there are $want of them.
sub split_until {
    my ($roots, $want, $maxlen, $bits) = @_;
    my @start = map { $_->[0] } @$roots;
    my @plen  = map { $_->[1] } @$roots;
    my $misses = 0;
    while (@start < $want) {
        my $i = int(rand(@start));
        if ($plen[$i] >= $maxlen) {
            die "gen_geoip_big: cannot reach $want networks\n" if ++$misses > 100 * $want;
            next;
        }
        my $p = ++$plen[$i];
        push @start, $start[$i] + (1 << ($bits - $p));
        push @plen,  $p;
    }
    my @order = sort { $start[$a] <=> $start[$b] } 0 .. $#start;
    return map { [ $start[$_], $plen[$_] ] } @order;
}

sub fmt4 {
    my ($s, $p) = @_;
    return sprintf('%d.%d.%d.%d/%d', $s >> 24, ($s >> 16) & 255, ($s >> 8) & 255, $s & 255, $p);
}

sub fmt6 {
    my ($s, $p) = @_;
    return sprintf('%x:%x:%x:%x::/%d', ($s >> 48) & 0xffff, ($s >> 32) & 0xffff,
        ($s >> 16) & 0xffff, $s & 0xffff, $p);
}

my $want6 = int($opt{networks} * $opt{'ipv6-share'});
my $want4 = $opt{networks} - $want6;

my @roots4 = map { [ $_ << 24, 8 ] } grep { $_ != 0 && $_ != 10 && $_ != 127 } 1 .. 223;
my @nets4;
for my $n (split_until(\@roots4, $want4, 32, 32)) {
    my @todo = ($n);
    while (my $m = shift @todo) {
        my $o = reserved_overlap(@$m);
        if ($o == 0) {
            push @nets4, $m;
        } elsif ($o == 1) {
            push @todo, [ $m->[0], $m->[1] + 1 ], [ $m->[0] + (1 << (31 - $m->[1])), $m->[1] + 1 ];
        }
    }
}
progress(sprintf('%d IPv4 networks cut', scalar @nets4));

# A few hundred /28s inside the RIRs' /12s (2400:: APNIC, 2600:: ARIN,
# 2800:: LACNIC, 2a00:: RIPE NCC, 2c00:: AFRINIC), as upper 64 bits.
my @nets6;
if ($want6) {
    my %root_seen;
    my @roots6;
    my $nroots = int($want6 / 250) + 1;
    my @rir = (0x240, 0x260, 0x280, 0x2a0, 0x2c0);    # the upper 12 bits
    while (@roots6 < $nroots) {
        my $hi = ($rir[ int(rand(@rir)) ] << 52) | (int(rand(1 << 16)) << 36);
        next if $root_seen{$hi}++;
        push @roots6, [ $hi, 28 ];
    }
    @nets6 = split_until(\@roots6, $want6, 64, 64);
    progress(sprintf('%d IPv6 networks cut', scalar @nets6));
}

# ---- the tree -----------------------------------------------------------
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version            => 6,
    record_size           => 28,    # as GeoLite2-City
    database_type         => 'GeoLite2-City',
    languages             => \@languages,
    description           => { en => 'tokenwatch benchmark data: GeoLite2-City sized and shaped' },
    map_key_type_callback => sub { $types{ $_[0] } // die "no type for key $_[0]\n" },
    alias_ipv6_to_ipv4    => 1,
    # The reserved ranges are left out above; the documentation ranges come
    # from cities.csv and must stay.
    remove_reserved_networks => 0,
    merge_strategy           => 'none',
);
$tree->_set_build_epoch($build_epoch);

my $holes = 0;
my @sample;    # [cidr, first, last, city] of some generated networks, for --verify
my $every = int((@nets4 + @nets6) / 2000) || 1;
my $k = 0;
for my $set ([ \@nets4, \&fmt4 ], [ \@nets6, \&fmt6 ]) {
    my ($nets, $fmt) = @$set;
    for my $n (@$nets) {
        if (rand() < 0.02) {
            $holes++;
            next;
        }
        my $cidr = $fmt->(@$n);
        my $rec  = next_record();
        $tree->insert_network($cidr, $rec);
        push @sample, [ $cidr, $n, $fmt == \&fmt4 ? 4 : 6, $rec ] if ++$k % $every == 0;
    }
}
progress(sprintf('%d generated networks inserted', $k));

# The test database's rows, over whatever the generator put there.
my %csv_net;
for my $r (@csv_rows) {
    $tree->insert_network($r->{network}, csv_record($r));
    $csv_net{ $r->{network} } = 1;
}
progress(sprintf('%d cities.csv rows inserted', scalar @csv_rows));

my $tmp = "$out.tmp";
open my $fh, '>:raw', $tmp or die "$tmp: $!\n";
$tree->write_tree($fh);
close $fh or die "$tmp: $!\n";
rename $tmp, $out or die "rename $tmp: $!\n";
progress('written');

# Networks with a record, as the tree holds them after the CSV overwrote parts
# of generated ones. iterate() does not follow the IPv4 aliases.
{
    package CountRecords;
    sub new { bless { data => 0, v4 => 0, hist => {} }, shift }
    sub process_data_record {
        my ($self, undef, undef, undef, undef, $ip, $plen) = @_;
        $self->{data}++;
        # IPv4 lives at ::/96.
        if ($plen >= 96 && $ip <= 0xffffffff) {
            $self->{v4}++;
            my $p = $plen - 96;
            my $band = $p < 16 ? '/8-/15' : $p < 20 ? '/16-/19' : $p < 24 ? '/20-/23'
                : $p == 24 ? '/24' : $p < 29 ? '/25-/28' : '/29-/32';
            $self->{hist}{$band}++;
        }
    }
}
my $counter = CountRecords->new;
$tree->iterate($counter);

printf "wrote %s: %d bytes (%.1f MB), %d networks with a record (%d IPv4, %d IPv6), "
    . "%d nodes, record size 28; generated %d networks + %d holes, %d cities.csv rows, "
    . "%d distinct city points\n",
    $out, -s $out, (-s $out) / 1e6, $counter->{data}, $counter->{v4},
    $counter->{data} - $counter->{v4}, $tree->node_count, $k, $holes, scalar @csv_rows,
    scalar keys %point_cache;
printf "IPv4 prefix lengths: %s\n", join(', ',
    map { sprintf('%s %.1f%%', $_, 100 * ($counter->{hist}{$_} // 0) / ($counter->{v4} || 1)) }
    qw(/8-/15 /16-/19 /20-/23 /24 /25-/28 /29-/32));

exit 0 unless $opt{verify};

# ---- verify -------------------------------------------------------------
require MaxMind::DB::Reader;
my $reader = MaxMind::DB::Reader->new(file => $out);
$reader->metadata->database_type eq 'GeoLite2-City' or die "$out: wrong database_type\n";
my ($checked, $bad) = (0, 0);
for my $s (@sample) {
    my ($cidr, $n, $v, $rec) = @$s;
    # A cities.csv row may have overwritten this network or part of it.
    next if grep { $_ eq $cidr } keys %csv_net;
    my @ends;
    if ($v == 4) {
        @ends = (fmt4($n->[0], 32), fmt4(last4(@$n), 32));
    } else {
        my $last = $n->[0] + ((1 << (64 - $n->[1])) - 1);
        @ends = (fmt6($n->[0], 128), sprintf('%x:%x:%x:%x:ffff:ffff:ffff:ffff/128',
            ($last >> 48) & 0xffff, ($last >> 32) & 0xffff, ($last >> 16) & 0xffff, $last & 0xffff));
    }
    for my $ip (@ends) {
        $ip =~ s{/\d+\z}{};
        $ip =~ s/::\z/::0/ if $v == 6;
        my $got = $reader->record_for_address($ip);
        $checked++;
        my $want_city = $rec->{city} ? $rec->{city}{names}{en} : '';
        my $got_city = $got && $got->{city} ? $got->{city}{names}{en} : '';
        my $want_cc = $rec->{country}{iso_code};
        my $got_cc = $got ? $got->{country}{iso_code} // '' : '(none)';
        next if $got_city eq $want_city && $got_cc eq $want_cc;
        # Inside a CSV network: the CSV row wins there.
        next if $got && grep { $_->{city} eq $got_city && $_->{country_iso} eq $got_cc } @csv_rows;
        $bad++;
        print STDERR "verify: $ip ($cidr): got '$got_city' $got_cc, want '$want_city' $want_cc\n"
            if $bad <= 10;
    }
}
progress("verified $checked lookups");
die "gen_geoip_big: $bad of $checked lookups disagree with what was inserted\n" if $bad;
print "verified: $checked lookups of generated networks return the inserted city and country\n";
