package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// clusterBench: the e2e scenario on one node and on a three-node cluster
// (R3 streams, routes on loopback) in the same run, as a ratio. The three
// nodes share this process, so "per core" counts all three.
func clusterBench(args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ExitOnError)
	mb, runs := sizeFlags(fs, 100, "MB of 1 KB audit records in the SLS stand-in", 3, "runs of each; medians are printed")
	tmp, bin := setUp(fs, args)
	defer os.RemoveAll(tmp)
	records := *mb * 1000
	var single, three []span
	for r := 0; r < *runs; r++ {
		s, err := e2eRun(bin, filepath.Join(tmp, fmt.Sprint("single", r)), records, 4)
		if err != nil {
			return err
		}
		single = append(single, s)
		c, err := clusterRun(bin, filepath.Join(tmp, fmt.Sprint("cluster", r)), records, 4)
		if err != nil {
			return err
		}
		three = append(three, c)
		fmt.Printf("  run %d: one node %.1f MB/s wall, three nodes %.1f MB/s wall\n", r+1, s.mbWall(), c.mbWall())
	}
	printRow("e2e, one node", single)
	printRow("e2e, three nodes R3 (one box)", three)
	a, b := median(single), median(three)
	fmt.Printf("three nodes / one node: %.2f× per core, %.2f× wall\n", b.mbPerCore()/a.mbPerCore(), b.mbWall()/a.mbWall())
	return nil
}

func clusterRun(bin, dir string, records, shards int) (span, error) {
	st, err := startStandins(bin, records, shards)
	if err != nil {
		return span{}, err
	}
	defer st.stop()
	routes := []string{freeAddr(), freeAddr(), freeAddr()}
	nodes := make([]*pipeline, len(routes))
	defer func() {
		for _, p := range nodes {
			if p != nil {
				p.stop()
			}
		}
	}()
	sum := func(name string) float64 {
		var t float64
		for _, p := range nodes {
			t += p.metric(name, nil)
		}
		return t
	}
	return measure(func() (int64, int64, error) {
		errs := make(chan error, len(nodes))
		for i := range nodes {
			go func(i int) {
				extra := fmt.Sprintf("cluster: {name: bench, listen: %q, peers: [%s], replicas: 3}\n", routes[i], strings.Join(routes, ", "))
				var err error
				nodes[i], err = startNode(filepath.Join(dir, fmt.Sprint("node-", i+1)), st.sls, st.hec, fmt.Sprint("node-", i+1), extra, 0)
				errs <- err
			}(i)
		}
		for range nodes {
			if err := <-errs; err != nil {
				return 0, 0, err
			}
		}
		deadline := time.Now().Add(30 * time.Minute)
		for {
			if sum("sluice_sls_records_total") >= float64(records) {
				if idle, err := nodes[0].n.Queue.Idle(context.Background()); err == nil && idle {
					break
				}
			}
			if time.Now().After(deadline) {
				return 0, 0, errors.New("cluster run did not drain in 30 minutes")
			}
			time.Sleep(50 * time.Millisecond)
		}
		return int64(sum("sluice_sls_bytes_total")), int64(sum("sluice_sls_records_total")), nil
	})
}
