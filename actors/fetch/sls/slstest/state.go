package slstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

type savedGroup struct {
	Timeout     time.Duration  `json:"timeout"`
	Order       bool           `json:"order"`
	Checkpoints map[int]string `json:"checkpoints"`
}

func newGroup(timeout time.Duration, order bool) *group {
	return &group{timeout: timeout, order: order, consumers: map[string]*consumer{}, owner: map[int]string{}, checkpoints: map[int]checkpoint{}}
}

func (s *Server) loadState() error {
	if s.opts.StateFile == "" {
		return nil
	}
	data, err := os.ReadFile(s.opts.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("slstest: state: %w", err)
	}
	var saved map[string]savedGroup
	if err := json.Unmarshal(data, &saved); err != nil {
		return fmt.Errorf("slstest: state %s: %w", s.opts.StateFile, err)
	}
	for name, sg := range saved {
		g := newGroup(sg.Timeout, sg.Order)
		for shard, c := range sg.Checkpoints {
			g.checkpoints[shard] = checkpoint{cursor: c, updated: time.Now()}
		}
		s.groups[name] = g
	}
	return nil
}

// saveStateLocked writes groups and checkpoints atomically (rename).
func (s *Server) saveStateLocked() error {
	if s.opts.StateFile == "" {
		return nil
	}
	saved := map[string]savedGroup{}
	for name, g := range s.groups {
		sg := savedGroup{Timeout: g.timeout, Order: g.order, Checkpoints: map[int]string{}}
		for shard, c := range g.checkpoints {
			sg.Checkpoints[shard] = c.cursor
		}
		saved[name] = sg
	}
	data, err := json.Marshal(saved)
	if err != nil {
		return err
	}
	tmp := s.opts.StateFile + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.opts.StateFile)
}
