package benchkit_test

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/amanat/cdc/pkg/benchkit"
)

// TestPlotWritesPNGAndSVG: the plot of a report is a PNG a person can
// open, or an SVG by extension.
func TestPlotWritesPNGAndSVG(t *testing.T) {
	r := validReport()
	dir := t.TempDir()
	pngPath := filepath.Join(dir, "moneycore.png")
	if err := benchkit.Plot(r, pngPath); err != nil {
		t.Fatalf("png: %v", err)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the PNG does not decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 800 {
		t.Fatalf("the PNG is %dx%d", b.Dx(), b.Dy())
	}

	svgPath := filepath.Join(dir, "moneycore.svg")
	if err := benchkit.Plot(r, svgPath); err != nil {
		t.Fatalf("svg: %v", err)
	}
	svg, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "Throughput", "Lag at 2000 events/s", "RSS of the cdc process", "lag p99"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("the SVG lacks %q", want)
		}
	}
}
