package main

import (
	"image/color"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// faultColors shade each fault kind's windows in every panel.
var faultColors = map[string]color.NRGBA{
	"kill":         {R: 220, G: 50, B: 47, A: 60},
	"quorum-loss":  {R: 160, G: 20, B: 20, A: 70},
	"hec-down":     {R: 211, G: 54, B: 130, A: 50},
	"hec-busy":     {R: 203, G: 75, B: 22, A: 50},
	"hec-slow":     {R: 181, G: 137, B: 0, A: 50},
	"hec-refuse":   {R: 108, G: 113, B: 196, A: 50},
	"buffer-full":  {R: 133, G: 153, B: 0, A: 50},
	"sls-5xx":      {R: 38, G: 139, B: 210, A: 50},
	"sls-slow":     {R: 42, G: 161, B: 152, A: 50},
	"policy-break": {R: 88, G: 110, B: 117, A: 50},
}

var seriesColors = []color.Color{
	color.NRGBA{R: 31, G: 119, B: 180, A: 255}, color.NRGBA{R: 255, G: 127, B: 14, A: 255},
	color.NRGBA{R: 44, G: 160, B: 44, A: 255}, color.NRGBA{R: 120, G: 120, B: 120, A: 255},
}

type series struct {
	name string
	y    func(chaosSample) float64
}

// plotChaos draws throughput, backlog, latency, RSS and goroutines over the
// run, with each fault's window shaded, into an SVG file.
func plotChaos(path string, c *chaosRun, s *sampler) error {
	s.mu.Lock()
	samples := append([]chaosSample(nil), s.samples...)
	s.mu.Unlock()
	xmax := 1.0
	if len(samples) > 0 {
		xmax = samples[len(samples)-1].at.Seconds()
	}
	var plots [][]*plot.Plot
	for i, pn := range chaosPanels(c) {
		p, err := pn.plot(samples, c.schedule, i == 0)
		if err != nil {
			return err
		}
		p.X.Min, p.X.Max = 0, xmax
		plots = append(plots, []*plot.Plot{p})
	}
	return writeSVG(path, plots)
}

// panel is one chart of the picture: its title, unit and lines.
type panel struct {
	title, unit string
	lines       []series
}

func chaosPanels(c *chaosRun) []panel {
	perNode := func(get func(chaosSample, int) float64) []series {
		var out []series
		for j, n := range c.nodes {
			out = append(out, series{n.name, func(sm chaosSample) float64 { return get(sm, j) }})
		}
		return out
	}
	return []panel{
		{"Throughput", "records/s", []series{
			{"delivered to Splunk", func(sm chaosSample) float64 { return sm.delivRate }},
			{"written to SLS", func(sm chaosSample) float64 { return sm.prodRate }},
		}},
		{"Backlog (written, not yet at Splunk)", "records", []series{
			{"backlog", func(sm chaosSample) float64 { return float64(sm.produced - sm.delivered) }},
		}},
		{"Latency SLS → Splunk, p99 of each second", "seconds", []series{
			{"p99", func(sm chaosSample) float64 {
				if sm.p99 == 0 {
					return math.NaN()
				}
				return sm.p99.Seconds()
			}},
		}},
		{"Resident memory", "MB", perNode(func(sm chaosSample, j int) float64 { return sm.rss[j] / (1 << 20) })},
		{"Goroutines", "goroutines", perNode(func(sm chaosSample, j int) float64 { return sm.goroutines[j] })},
	}
}

// plot draws the panel's lines over the samples, each fault's window
// shaded behind them; the first panel's legend names the faults.
func (pn panel) plot(samples []chaosSample, schedule []fault, first bool) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = pn.title
	p.Y.Label.Text = pn.unit
	p.X.Label.Text = "seconds since start"
	p.Legend.Top = true
	ymax := 1.0
	var lines []*plotter.Line
	for k, sr := range pn.lines {
		var xys plotter.XYs
		for _, sm := range samples {
			if y := sr.y(sm); !math.IsNaN(y) && !math.IsInf(y, 0) {
				xys = append(xys, plotter.XY{X: sm.at.Seconds(), Y: y})
				ymax = math.Max(ymax, y)
			}
		}
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.Color = seriesColors[k%len(seriesColors)]
		l.Width = vg.Points(1)
		lines = append(lines, l)
		p.Legend.Add(sr.name, l)
	}
	legend := map[string]bool{}
	for _, f := range schedule {
		x0, x1 := f.At.Seconds(), f.end().Seconds()
		band, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: 0}, {X: x1, Y: 0}, {X: x1, Y: ymax * 1.05}, {X: x0, Y: ymax * 1.05}})
		if err != nil {
			return nil, err
		}
		band.Color = faultColors[f.Kind]
		band.LineStyle.Width = 0
		p.Add(band)
		if first && !legend[f.Kind] {
			legend[f.Kind] = true
			p.Legend.Add(f.Kind, band)
		}
	}
	for _, l := range lines {
		p.Add(l)
	}
	p.Y.Min = 0
	return p, nil
}

// writeSVG stacks the plots, one a row, into an SVG file.
func writeSVG(path string, plots [][]*plot.Plot) error {
	img := vgsvg.New(30*vg.Centimeter, vg.Length(len(plots))*7*vg.Centimeter)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadY: vg.Centimeter / 2, PadTop: vg.Centimeter / 4, PadBottom: vg.Centimeter / 4, PadLeft: vg.Centimeter / 4, PadRight: vg.Centimeter / 2}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := img.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
