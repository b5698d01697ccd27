#!/usr/bin/env bash
# Draws the charts of docs/benchmarks.md from a `courier-bench --sweep` CSV with gnuplot
# (Debian: gnuplot-nox). For each scenario in the CSV: msgs/s against producers=consumers,
# msgs/s against payload (both with the min..max of the runs as error bars), and the
# latency percentiles of the paced run.
#   usage: bench/plot/charts.sh SWEEP.csv OUTDIR      -> OUTDIR/<scenario>-{threads,payload,latency}.png
set -euo pipefail

csv="$1" out="$2"
command -v gnuplot >/dev/null || { echo "charts.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Column numbers from the header, so the CSV may gain columns without breaking the charts.
col() { head -1 "$csv" | tr ',' '\n' | grep -nx "$1" | cut -d: -f1; }
c_scn=$(col scenario) c_axis=$(col sweep) c_impl=$(col impl) c_prod=$(col producers) c_pay=$(col payload)
c_rate=$(col msgs_per_s) c_min=$(col msgs_per_s_min) c_max=$(col msgs_per_s_max)
c_p50=$(col p50_ns) c_p99=$(col p99_ns) c_p999=$(col p999_ns)

common='set terminal pngcairo size 900,540 font "DejaVu Sans,11" noenhanced
set grid ytics mytics lc rgb "#dddddd"
set key outside right top
set border 3
set tics nomirror'

for scenario in $(awk -F, -v c="$c_scn" 'NR > 1 { print $c }' "$csv" | sort -u); do
    impls=$(awk -F, -v c="$c_scn" -v s="$scenario" -v i="$c_impl" 'NR > 1 && $c == s { print $i }' "$csv" | awk '!seen[$0]++')
    for axis in threads payload; do
        x=$([ "$axis" = threads ] && echo "$c_prod" || echo "$c_pay")
        plots=()
        for impl in $impls; do
            dat="$tmp/$scenario-$axis-$impl.dat"
            awk -F, -v cs="$c_scn" -v s="$scenario" -v ca="$c_axis" -v a="$axis" -v ci="$c_impl" -v i="$impl" \
                -v cx="$x" -v cr="$c_rate" -v cmin="$c_min" -v cmax="$c_max" \
                'NR > 1 && $cs == s && $ca == a && $ci == i { print $cx, $cr / 1e6, $cmin / 1e6, $cmax / 1e6 }' \
                "$csv" | sort -n >"$dat"
            [ -s "$dat" ] || continue
            width=$([ "$impl" = courier ] && echo 3 || echo 1.5)
            plots+=("'$dat' using 1:2:3:4 with yerrorlines lw $width pt 7 ps 0.8 title '$impl'")
        done
        [ ${#plots[@]} -gt 0 ] || continue
        if [ "$axis" = threads ]; then
            xlabel="producers = consumers (threads: twice this)"
            xsetup='set logscale x 2; set xtics (1, 2, 4, 8); set xrange [0.8:10]'
        else
            xlabel="payload (bytes per message), 1 producer, 1 consumer"
            xsetup='set logscale x 2; set xtics (8, 16, 64, 256, 1024, 4096); set xrange [6:5500]'
        fi
        {
            echo "$common"
            echo "set output '$out/$scenario-$axis.png'"
            echo "set title '$scenario: throughput (median of runs, bars: min..max)'"
            echo "set xlabel '$xlabel'"
            echo "set ylabel 'million messages / s'"
            echo "$xsetup"
            echo "set logscale y 10; set mytics 10"
            (IFS=,; echo "plot ${plots[*]}")
        } >"$tmp/plot.gp"
        gnuplot "$tmp/plot.gp"
    done

    # Latency of the paced run: clustered bars per impl, log scale (tails span 4 decades).
    dat="$tmp/$scenario-latency.dat"
    awk -F, -v cs="$c_scn" -v s="$scenario" -v ca="$c_axis" -v ci="$c_impl" \
        -v c1="$c_p50" -v c2="$c_p99" -v c3="$c_p999" \
        'NR > 1 && $cs == s && $ca == "latency" && $c1 != "" { print $ci, $c1 / 1e3, $c2 / 1e3, $c3 / 1e3 }' \
        "$csv" >"$dat"
    if [ -s "$dat" ]; then
        rate=$(awk -F, -v cs="$c_scn" -v s="$scenario" -v ca="$c_axis" 'NR > 1 && $cs == s && $ca == "latency" { print $NF; exit }' "$csv")
        {
            echo "$common"
            echo "set output '$out/$scenario-latency.png'"
            echo "set title '$scenario: send -> receive latency, 1P1C paced at ${rate} msgs/s, every message timed'"
            echo "set ylabel 'microseconds (log scale)'"
            echo "set style data histograms; set style histogram clustered gap 1"
            echo "set style fill solid 0.85 border -1; set boxwidth 0.9"
            echo "set logscale y 10; set yrange [0.1:*]; set mytics 10"
            echo "set xtics rotate by -30"
            echo "plot '$dat' using 2:xtic(1) title 'p50' lc rgb '#4477aa', '' using 3 title 'p99' lc rgb '#ee8833', '' using 4 title 'p99.9' lc rgb '#cc3311'"
        } >"$tmp/plot.gp"
        gnuplot "$tmp/plot.gp"
    fi
done
echo "charts.sh: wrote $(ls "$out"/*.png 2>/dev/null | wc -l) charts to $out" >&2
