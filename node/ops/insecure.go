package ops

import "github.com/prometheus/client_golang/prometheus"

// InsecureSetting is a setting of the node's config that turns a
// protection off by name (cluster.insecure, ...). Status lists those on;
// sluice_insecure has one series per setting, 1 when on.
type InsecureSetting struct {
	What    string `json:"what"`    // what it exposes: cluster_routes
	Setting string `json:"setting"` // the config field: cluster.insecure
	On      bool   `json:"-"`
}

func registerInsecure(reg prometheus.Registerer, settings []InsecureSetting) error {
	if reg == nil {
		return nil
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_insecure",
		Help: "1 when the config turns a protection off by name (setting); sluice validate warns about each."}, []string{"what", "setting"})
	for _, s := range settings {
		v := 0.0
		if s.On {
			v = 1
		}
		g.WithLabelValues(s.What, s.Setting).Set(v)
	}
	return reg.Register(g)
}

// insecureOn lists the settings that are on.
func insecureOn(settings []InsecureSetting) []InsecureSetting {
	var on []InsecureSetting
	for _, s := range settings {
		if s.On {
			on = append(on, s)
		}
	}
	return on
}
