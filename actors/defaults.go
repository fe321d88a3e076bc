package actors

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults fills in what a component's dependencies may leave out (a test
// or a benchmark builds one alone): a logger that discards, and a
// registry of its own.
func Defaults(log *slog.Logger, reg prometheus.Registerer) (*slog.Logger, prometheus.Registerer) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return log, reg
}
