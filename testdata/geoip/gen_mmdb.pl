#!/usr/bin/perl
#
# gen_mmdb.pl — builds the test GeoIP databases from the CSVs beside it:
#
#   cities.csv -> GeoLite2-City-Test.mmdb  (database_type "GeoLite2-City")
#   cities.csv + asn.csv -> GeoLite2-ASN-Test.mmdb (database_type "GeoLite2-ASN")
#
# The records have the shape and field types of MaxMind's GeoLite2 databases
# (IPv6 tree, IPv4 aliased into ::ffff:0:0/96, 6to4 and Teredo as in the real
# files), so code that reads them reads a real GeoLite2-City.mmdb unchanged.
# The output is byte-for-byte reproducible: map keys are written sorted and
# the build epoch is fixed (SOURCE_DATE_EPOCH overrides it).
#
# Needs Debian's libmaxmind-db-writer-perl. Run by hand after editing a CSV:
#     perl testdata/geoip/gen_mmdb.pl
# The .mmdb files are committed, so builds and CI never need the Perl module.
use strict;
use warnings;
use utf8;

use File::Basename qw(dirname);
use MaxMind::DB::Writer::Tree;
use Net::Works::Network;

my $dir = dirname(__FILE__);

# 2026-01-01T00:00:00Z. A fixed stamp keeps regenerated files identical when
# nothing in the CSVs changed, so a diff of the .mmdb means a data change.
my $build_epoch = $ENV{SOURCE_DATE_EPOCH} // 1767225600;

# GeoNames ids of the continents, as used by GeoLite2.
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
my %kinds = map { $_ => 1 }
    qw(residential mobile datacenter vpn country country-only);

# MMDB types of every map key, as in GeoLite2 (the writer needs them declared).
my %types = (
    accuracy_radius                => 'uint16',
    autonomous_system_number       => 'uint32',
    autonomous_system_organization => 'utf8_string',
    city                           => 'map',
    code                           => 'utf8_string',
    continent                      => 'map',
    country                        => 'map',
    en                             => 'utf8_string',
    geoname_id                     => 'uint32',
    iso_code                       => 'utf8_string',
    latitude                       => 'double',
    location                       => 'map',
    longitude                      => 'double',
    names                          => 'map',
    registered_country             => 'map',
    time_zone                      => 'utf8_string',
);

# Reads a header-first CSV without quoting (the generator refuses quotes and
# embedded commas, so any CSV reader splits these files the same way).
sub read_csv {
    my ($path, @want) = @_;
    open my $fh, '<:encoding(UTF-8)', $path or die "$path: $!\n";
    my $header = <$fh>;
    defined $header or die "$path: empty file\n";
    $header =~ s/\r?\n\z//;
    my @cols = split /,/, $header, -1;
    for my $w (@want) {
        grep { $_ eq $w } @cols or die "$path: header lacks column '$w'\n";
    }
    my @rows;
    while (my $line = <$fh>) {
        $line =~ s/\r?\n\z//;
        next if $line eq '';
        die "$path:$.: quotes are not supported\n" if $line =~ /"/;
        my @f = split /,/, $line, -1;
        @f == @cols
            or die "$path:$.: expected " . scalar(@cols) . " fields, got " . scalar(@f) . "\n";
        my %row;
        @row{@cols} = @f;
        $row{_where} = "$path:$.";
        push @rows, \%row;
    }
    return @rows;
}

sub check_network {
    my ($row) = @_;
    my $net = eval { Net::Works::Network->new_from_string(string => $row->{network}) };
    die "$row->{_where}: bad network '$row->{network}'\n" unless $net;
    # A host part would be silently dropped by the writer; say so instead.
    $net->as_string eq lc $row->{network}
        or die "$row->{_where}: '$row->{network}' has host bits set (network is "
        . $net->as_string . ")\n";
    return $net;
}

sub overlaps {
    my ($a, $b) = @_;
    return 0 if $a->version != $b->version;
    return !($a->last->as_integer < $b->first->as_integer
        || $b->last->as_integer < $a->first->as_integer);
}

sub check_uint {
    my ($row, $col, $max) = @_;
    my $v = $row->{$col};
    $v =~ /\A[0-9]+\z/ && $v > 0 && $v <= $max
        or die "$row->{_where}: $col '$v' is not an integer in 1..$max\n";
}

my $zoneinfo = '/usr/share/zoneinfo';

sub check_city_row {
    my ($row) = @_;
    my $w = $row->{_where};
    $row->{country_iso} =~ /\A[A-Z]{2}\z/ or die "$w: country_iso must be two capitals\n";
    $continent_of{ $row->{country_iso} }
        or die "$w: add $row->{country_iso} to %continent_of\n";
    $row->{country_name} ne '' or die "$w: country_name is empty\n";
    $kinds{ $row->{kind} } or die "$w: unknown kind '$row->{kind}'\n";
    my $has_loc = $row->{lat} ne '' || $row->{lon} ne '';
    if ($has_loc) {
        for my $c (qw(lat lon)) {
            $row->{$c} =~ /\A-?[0-9]+(\.[0-9]+)?\z/ or die "$w: $c '$row->{$c}' is not a number\n";
        }
        abs($row->{lat}) <= 90   or die "$w: latitude out of range\n";
        abs($row->{lon}) <= 180  or die "$w: longitude out of range\n";
        check_uint($row, 'radius_km', 65535);
        $row->{time_zone} =~ m{\A[A-Za-z]+(/[A-Za-z0-9_+-]+)+\z}
            or die "$w: time_zone '$row->{time_zone}' is not an IANA zone name\n";
        # Catch typos where the tz database is installed (always on Debian).
        !-d $zoneinfo || -f "$zoneinfo/$row->{time_zone}"
            or die "$w: time zone $row->{time_zone} is not in $zoneinfo\n";
    } else {
        $row->{radius_km} eq '' && $row->{time_zone} eq ''
            or die "$w: radius_km and time_zone need lat and lon\n";
        $row->{city} eq '' or die "$w: a city needs lat and lon\n";
    }
    if ($row->{city} ne '') {
        check_uint($row, 'geoname_id', 4294967295) if $row->{geoname_id} ne '';
    } else {
        $row->{geoname_id} eq '' or die "$w: geoname_id without a city\n";
    }
    if ($row->{asn} ne '' || $row->{asn_org} ne '') {
        check_uint($row, 'asn', 4294967295);
        $row->{asn_org} ne '' or die "$w: asn without asn_org\n";
    }
}

sub city_record {
    my ($row) = @_;
    my $cc = $row->{country_iso};
    my ($cont_id, $cont_name) = @{ $continents{ $continent_of{$cc} } };
    my $country = { iso_code => $cc, names => { en => $row->{country_name} } };
    my %rec = (
        continent => {
            code       => $continent_of{$cc},
            geoname_id => $cont_id,
            names      => { en => $cont_name },
        },
        country            => $country,
        registered_country => { %{$country} },
    );
    if ($row->{city} ne '') {
        $rec{city} = { names => { en => $row->{city} } };
        $rec{city}{geoname_id} = 0 + $row->{geoname_id} if $row->{geoname_id} ne '';
    }
    if ($row->{lat} ne '') {
        $rec{location} = {
            latitude        => 0 + $row->{lat},
            longitude       => 0 + $row->{lon},
            accuracy_radius => 0 + $row->{radius_km},
            time_zone       => $row->{time_zone},
        };
    }
    return \%rec;
}

sub new_tree {
    my ($type, $desc) = @_;
    my $tree = MaxMind::DB::Writer::Tree->new(
        ip_version            => 6,
        record_size           => 24,
        database_type         => $type,
        languages             => ['en'],
        description           => { en => $desc },
        map_key_type_callback => sub { $types{ $_[0] } // die "no type for key $_[0]\n" },
        # As in GeoLite2: IPv4 lives at ::/96 and ::ffff:0:0/96 points to it.
        alias_ipv6_to_ipv4 => 1,
        # The documentation ranges (192.0.2.0/24, 2001:db8::/32, ...) are the
        # point of this data; the default would silently drop them.
        remove_reserved_networks => 0,
        merge_strategy           => 'none',
    );
    # The writer's documented hook for reproducible output in tests.
    $tree->_set_build_epoch($build_epoch);
    return $tree;
}

sub write_tree {
    my ($tree, $path) = @_;
    my $tmp = "$path.tmp";
    open my $fh, '>:raw', $tmp or die "$tmp: $!\n";
    $tree->write_tree($fh);
    close $fh or die "$tmp: $!\n";
    rename $tmp, $path or die "rename $tmp: $!\n";
    printf "wrote %s (%d bytes)\n", $path, -s $path;
}

my @cities = read_csv("$dir/cities.csv",
    qw(network city country_iso country_name lat lon radius_km time_zone asn asn_org
       geoname_id kind));
my @asns = read_csv("$dir/asn.csv", qw(network asn asn_org));

my @seen;    # [net, row] of every cities.csv network, for overlap checks
for my $row (@cities) {
    my $net = check_network($row);
    check_city_row($row);
    for my $s (@seen) {
        overlaps($net, $s->[0])
            and die "$row->{_where}: $row->{network} overlaps $s->[1]{network} ($s->[1]{_where})\n";
    }
    push @seen, [ $net, $row ];
}
# An asn.csv network is ASN data the cities do not carry: it may lie in a
# cities.csv network whose asn is empty, or where there is no city record at
# all, but never where cities.csv already names an ASN.
my @asn_seen;
for my $row (@asns) {
    my $net = check_network($row);
    check_uint($row, 'asn', 4294967295);
    $row->{asn_org} ne '' or die "$row->{_where}: asn_org is empty\n";
    for my $s (@seen) {
        next if $s->[1]{asn} eq '';
        overlaps($net, $s->[0])
            and die "$row->{_where}: $row->{network} overlaps $s->[1]{network}, which has an asn\n";
    }
    for my $s (@asn_seen) {
        overlaps($net, $s->[0])
            and die "$row->{_where}: $row->{network} overlaps $s->[1]{network}\n";
    }
    push @asn_seen, [ $net, $row ];
}

my $city_tree = new_tree('GeoLite2-City', 'tokenwatch test data: GeoLite2-City compatible');
my $asn_tree  = new_tree('GeoLite2-ASN',  'tokenwatch test data: GeoLite2-ASN compatible');
for my $row (@cities) {
    $city_tree->insert_network($row->{network}, city_record($row));
    if ($row->{asn} ne '') {
        $asn_tree->insert_network($row->{network}, {
            autonomous_system_number       => 0 + $row->{asn},
            autonomous_system_organization => $row->{asn_org},
        });
    }
}
for my $row (@asns) {
    $asn_tree->insert_network($row->{network}, {
        autonomous_system_number       => 0 + $row->{asn},
        autonomous_system_organization => $row->{asn_org},
    });
}
write_tree($city_tree, "$dir/GeoLite2-City-Test.mmdb");
write_tree($asn_tree,  "$dir/GeoLite2-ASN-Test.mmdb");
