//go:build conformance

package conformance

import (
	"fmt"
	"strings"

	"github.com/dsqlgate/dsqlgate/internal/harness"
)

// readmeBegin and readmeEnd mark the block of README.md that a full run
// with CONFORMANCE_WRITE=1 rewrites.
const (
	readmeBegin = "<!-- conformance:begin -->"
	readmeEnd   = "<!-- conformance:end -->"
)

// renderTable is the counts, one row a target, as a Markdown table.
func renderTable(reports []*targetReport) string {
	var b strings.Builder
	b.WriteString("| target | pass | fail | skip | expected failures |\n|---|---:|---:|---:|---:|\n")
	for _, r := range reports {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", r.Target, r.Pass, r.Fail, r.Skip, r.Expected)
	}
	return b.String()
}

// renderReadmeBlock is the README's block, markers included.
func renderReadmeBlock(reports []*targetReport) string {
	return readmeBegin + "\n\n" +
		fmt.Sprintf("pgx %s, top-level tests; fail counts the failures not on the list.\n\n", pgxVersion) +
		renderTable(reports) + "\n" + readmeEnd
}

// spliceReadme replaces the marked block of readme with block.
func spliceReadme(readme, block string) (string, error) {
	return harness.SpliceMarked(readme, readmeBegin, readmeEnd, block)
}
