package benchkit

// The plot uses gonum.org/v1/plot: pure Go (no cgo, no gnuplot or
// browser to install on CI or a developer's machine), it ships its own
// fonts, renders PNG and SVG from the same code, and is the Go
// ecosystem's maintained plotting library; its output is a file a person
// opens, which is all the benchmark needs.

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// palette gives each phase the same colour in every panel.
var palette = []color.RGBA{
	{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, {R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, {R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, {R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff}, {R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
}

// Plot draws four panels, each against seconds since its phase started:
// the apply throughput of every drain into Postgres (events/s), the
// publish throughput of cdc tail (an order of magnitude above, so apart),
// lag p50 and p99 per second of the steady-rate phase (ms, with the
// 250 ms target), and the RSS of the cdc process of every phase (MB, with
// the 250 MB target). The format is path's extension: .png or .svg.
func Plot(r *Report, path string) error {
	colours := seriesColours{}
	tp, err := colours.panel(r, "Throughput of each drain into Postgres (events applied)", "events/s", "throughput", 0)
	if err != nil {
		return err
	}
	pp, err := colours.panel(r, "Throughput of cdc tail (events published into JetStream)", "events/s", "publish", 0)
	if err != nil {
		return err
	}
	lp, err := colours.panel(r, fmt.Sprintf("Lag at %d events/s offered (Postgres row write - MongoDB write stamp)", r.Lag.OfferedRate), "ms", "lag", 250)
	if err != nil {
		return err
	}
	rp, err := colours.panel(r, "RSS of the cdc process", "MB", "rss", 250)
	if err != nil {
		return err
	}
	return writePlot(path, [][]*plot.Plot{{tp}, {pp}, {lp}, {rp}})
}

// seriesColours gives out the palette's colours in order of first use and
// remembers them, so that a series keeps its colour in every panel.
type seriesColours map[string]color.RGBA

func (c seriesColours) of(name string) color.RGBA {
	if col, ok := c[name]; ok {
		return col
	}
	col := palette[len(c)%len(palette)]
	c[name] = col
	return col
}

// panel draws the series of r of one kind, one line each, with target as a
// dashed line when it is above 0.
func (c seriesColours) panel(r *Report, title, ylabel, kind string, target float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since the phase started"
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	top := target
	for _, s := range r.Series {
		if s.Kind != kind || len(s.Points) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(s.Points))
		for i, pt := range s.Points {
			xys[i].X, xys[i].Y = pt.T, pt.V
			top = max(top, pt.V)
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", s.Name, err)
		}
		l.Color = c.of(s.Name)
		l.Width = vg.Points(1.5)
		if s.Name == "lag p99" {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(l)
		p.Legend.Add(s.Name, l)
	}
	if target > 0 {
		hl := plotter.NewFunction(func(float64) float64 { return target })
		hl.Color = color.RGBA{R: 0xb0, A: 0xff}
		hl.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		p.Add(hl)
		p.Legend.Add(fmt.Sprintf("target %.0f", target), hl)
	}
	// Headroom for the legend, top right, above the lines.
	p.Y.Max = top * 1.4
	return p, nil
}

// writePlot renders the panels (one per row) into path, as SVG for a .svg
// path and PNG on a white background otherwise.
func writePlot(path string, plots [][]*plot.Plot) error {
	width, height := 12*vg.Inch, 16*vg.Inch
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Points(8), PadBottom: vg.Points(8), PadX: vg.Points(8), PadY: vg.Points(16)}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	defer f.Close()
	switch filepath.Ext(path) {
	case ".svg":
		cv := vgsvg.New(width, height)
		dc := draw.New(cv)
		for i, row := range plot.Align(plots, tiles, dc) {
			plots[i][0].Draw(row[0])
		}
		if _, err := cv.WriteTo(f); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	default:
		cv := vgimg.New(width, height)
		dc := draw.New(cv)
		dc.SetColor(color.White)
		dc.Fill(dc.Rectangle.Path())
		for i, row := range plot.Align(plots, tiles, dc) {
			plots[i][0].Draw(row[0])
		}
		if _, err := (vgimg.PngCanvas{Canvas: cv}).WriteTo(f); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	}
	return f.Close()
}
