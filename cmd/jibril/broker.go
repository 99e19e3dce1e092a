package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/jibril-rt/jibril/engine/confine"
	"github.com/jibril-rt/jibril/engine/procfs"
)

// procBrokerCmd is the hidden subcommand the daemon re-executes itself as to start its /proc
// broker (engine/procfs).
const procBrokerCmd = "__proc-broker"

func newProcBrokerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    procBrokerCmd,
		Short:  "Internal: the daemon's /proc broker; refuses to run unless `jibril run` started it",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			err := procfs.ServeBroker(procfs.BrokerFD, func() error {
				_, err := confine.ApplyBroker(confine.BrokerKeep())
				return err
			})
			if err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			return nil
		},
	}
}

// landlockPlanned says whether confine will apply Landlock: then /proc/PID/{exe,cwd,fd,...}
// of other processes must be read through the broker, started before.
func landlockPlanned(cfg daemonConfig) bool {
	if !cfg.Confine.Enabled || !cfg.Confine.Landlock || confine.LandlockABI() == 0 {
		return false
	}
	_, err := os.Stat(cfg.StateDir)
	return err == nil
}

// startProcBroker starts the /proc broker when Landlock is planned and returns what the daemon
// reads /proc through: the broker's client, or nil (direct reads) when Landlock is not planned.
// A broker that fails to start or dies is reported loudly and marked degraded; detection goes
// on, with events missing what only /proc of other processes told (process.exe, the base of
// relative paths, most of the evidence).
func (d *daemon) startProcBroker(cfg daemonConfig) *procfs.Client {
	if !landlockPlanned(cfg) {
		d.met.SetDegraded("proc_broker", false)
		return nil
	}
	const lost = "events lose process.exe of relative execs and symbolic links, relative file paths and most of CollectEvidence"
	c, err := procfs.Spawn(procfs.SpawnOptions{Path: "/proc/self/exe", Args: []string{"jibril", procBrokerCmd}, Stderr: os.Stderr,
		OnDeath: func(err error) {
			d.log.Error("DEGRADED: the /proc broker died: "+lost, "err", err.Error())
			d.met.SetDegraded("proc_broker", true)
		}})
	if err != nil {
		d.log.Error("DEGRADED: the /proc broker did not start: "+lost, "err", err.Error())
		d.met.SetDegraded("proc_broker", true)
		return nil
	}
	d.met.SetDegraded("proc_broker", false)
	d.log.Info("proc broker started", "pid", c.Pid(), "capabilities", strings.Join(confine.MaskOf(confine.BrokerKeep()...).Names(), ","))
	return c
}
