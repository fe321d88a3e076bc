package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

// MetricSum adds up every series of a counter or gauge in the registry whose
// labels include match (nil matches all). Dev mode's progress line and the
// benchmarks read the node's own metrics this way, so what they print is
// what /metrics says.
func MetricSum(reg prometheus.Gatherer, name string, match map[string]string) float64 {
	families, err := reg.Gather()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for k, v := range match {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				total += m.Counter.GetValue()
			case m.Gauge != nil:
				total += m.Gauge.GetValue()
			case m.Histogram != nil:
				total += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return total
}
