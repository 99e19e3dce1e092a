package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// cdfSeries is one latency distribution drawn as a cumulative curve.
type cdfSeries struct {
	name    string
	color   string
	samples []float64 // µs, any order
}

// cdfSVG draws the cumulative distributions of the series on a log-x axis (µs) with their
// medians and 99th percentiles marked. It is plain SVG, written by hand: no dependency.
func cdfSVG(title string, series []cdfSeries) string {
	const (
		w, h                   = 860, 500
		left, right, top, bott = 80, 30, 50, 70
		pw, ph                 = w - left - right, h - top - bott
	)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, v := range s.samples {
			if v > 0 {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	x := func(v float64) float64 {
		v = max(v, math.Pow(10, dlo))
		return left + (math.Log10(v)-dlo)/(dhi-dlo)*pw
	}
	y := func(p float64) float64 { return top + (1-p)*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" text-anchor="middle">%s</text>`+"\n", w/2, esc(title))

	// Grid and ticks: 1, 2, 5 per decade on x; every 10 % on y.
	for d := dlo; d <= dhi; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > dhi+1e-9 {
				break
			}
			px := x(v)
			stroke, dash := "#ccc", ` stroke-dasharray="2,3"`
			if m == 1 {
				stroke, dash = "#999", ""
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"%s/>`+"\n", px, top, px, top+ph, stroke, dash)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px, top+ph+18, tickLabel(v))
		}
	}
	for i := 0; i <= 10; i++ {
		p := float64(i) / 10
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(p), left+pw, y(p))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%d %%</text>`+"\n", left-6, y(p)+4, i*10)
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">exec tracepoint → victim dead (µs, log scale)</text>`+"\n", left+pw/2, h-22)
	fmt.Fprintf(&b, `<text transform="translate(22 %d) rotate(-90)" text-anchor="middle">victims dead (cumulative fraction)</text>`+"\n", top+ph/2)

	for i, s := range series {
		v := slices.Clone(s.samples)
		slices.Sort(v)
		if len(v) == 0 {
			continue
		}
		var pts strings.Builder
		n := float64(len(v))
		fmt.Fprintf(&pts, "%.1f,%.1f", x(v[0]), y(0))
		for j, u := range v {
			fmt.Fprintf(&pts, " %.1f,%.1f %.1f,%.1f", x(u), y(float64(j)/n), x(u), y(float64(j+1)/n))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, pts.String())
		for k, q := range []float64{0.5, 0.99} {
			px := x(quantile(v, q))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="5,3"/>`+"\n", px, y(q), px, top+ph, s.color)
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`+"\n", px, y(q), s.color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="%s" font-size="11">%s</text>`+"\n", px+3, top+ph-6-14*i, s.color, []string{"p50", "p99"}[k])
		}
	}
	// Legend with the percentiles, bottom right inside the plot (a CDF leaves it empty).
	lw, lh := 430, 12+34*len(series)
	lx, ly := left+pw-lw-10, top+ph-lh-40
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="white" fill-opacity="0.9" stroke="#999"/>`+"\n", lx, ly, lw, lh)
	for i, s := range series {
		v := slices.Clone(s.samples)
		slices.Sort(v)
		yy := ly + 20 + i*34
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", lx+10, yy, lx+38, yy, s.color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s (n=%d)</text>`+"\n", lx+46, yy+4, esc(s.name), len(v))
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">p50 %s µs, p99 %s µs</text>`+"\n", lx+46, yy+19, s.color, trim(quantile(v, 0.5)), trim(quantile(v, 0.99)))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// quantile of sorted v (nearest rank below), the same rule as percentile.
func quantile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(p*float64(len(sorted)-1))]
}

func tickLabel(v float64) string {
	switch {
	case v >= 1e6:
		return trim(v/1e6) + " s"
	case v >= 1e3:
		return trim(v/1e3) + " ms"
	}
	return trim(v) + " µs"
}

func trim(v float64) string {
	if v >= 100 || v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
