// qmp-go: EVE pillar's QMP flow, with the QMP client pillar uses (github.com/digitalocean/
// go-qemu/qmp), against vmm's QmpServer (tests/tools/qmp_fake_domain). Run by
// tests/integration/qmp_go_client.sh:
//
//	qmp-go QMP_SOCKET LISTENER_SOCKET
//
// As pillar does: a new connection per command on QMP_SOCKET, query-status decoded strictly
// (only id and return; return only running, singlestep, status), and a separate long-lived
// connection on LISTENER_SOCKET that only reads events. Steps:
//  1. poll query-status until "prelaunch";
//  2. cont, expect "running";
//  3. system_powerdown, expect the POWERDOWN event on the listener connection;
//  4. an unknown command is an error; quit is answered and gives SHUTDOWN.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

const sockTimeout = 5 * time.Second

// execRawCmd is pillar's: one connection per command.
func execRawCmd(socket, cmd string) ([]byte, error) {
	monitor, err := qmp.NewSocketMonitor("unix", socket, sockTimeout)
	if err != nil {
		return nil, err
	}
	if err := monitor.Connect(); err != nil {
		return nil, err
	}
	defer monitor.Disconnect()
	return monitor.Run([]byte(cmd))
}

// queryStatus decodes as pillar's getQemuStatus does: unknown fields are errors.
func queryStatus(socket string) (string, error) {
	raw, err := execRawCmd(socket, `{ "execute": "query-status" }`)
	if err != nil {
		return "", err
	}
	var result struct {
		ID     string `json:"id"`
		Return struct {
			Running    bool   `json:"running"`
			Singlestep bool   `json:"singlestep"`
			Status     string `json:"status"`
		} `json:"return"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&result); err != nil {
		return "", fmt.Errorf("strict decode of %q: %v", raw, err)
	}
	if result.Return.Running != (result.Return.Status == "running") {
		return "", fmt.Errorf("running=%v with status %q", result.Return.Running, result.Return.Status)
	}
	return result.Return.Status, nil
}

func waitEvent(events <-chan qmp.Event, name string) (qmp.Event, error) {
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return qmp.Event{}, fmt.Errorf("event stream closed before %s", name)
			}
			if e.Timestamp.Seconds == 0 {
				return qmp.Event{}, fmt.Errorf("event %s without timestamp", e.Event)
			}
			fmt.Printf("event %s %v\n", e.Event, e.Data)
			if e.Event == name {
				return e, nil
			}
		case <-deadline:
			return qmp.Event{}, fmt.Errorf("no %s event within 5 s", name)
		}
	}
}

func run(qmpSock, listenerSock string) error {
	// 1. Poll until the domain is there and in prelaunch.
	var status string
	var err error
	for i := 0; i < 100; i++ {
		if status, err = queryStatus(qmpSock); err == nil && status == "prelaunch" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("query-status: %v", err)
	}
	if status != "prelaunch" {
		return fmt.Errorf("status %q, want prelaunch", status)
	}
	fmt.Println("status prelaunch")

	// The long-lived event reader, on the other socket.
	listener, err := qmp.NewSocketMonitor("unix", listenerSock, sockTimeout)
	if err != nil {
		return err
	}
	if err := listener.Connect(); err != nil {
		return fmt.Errorf("listener connect: %v", err)
	}
	defer listener.Disconnect()
	events, err := listener.Events(nil)
	if err != nil {
		return err
	}

	// 2. cont takes effect before its reply.
	if _, err := execRawCmd(qmpSock, `{ "execute": "cont" }`); err != nil {
		return fmt.Errorf("cont: %v", err)
	}
	if status, err = queryStatus(qmpSock); err != nil || status != "running" {
		return fmt.Errorf("after cont: status %q, err %v", status, err)
	}
	fmt.Println("status running")
	if _, err := waitEvent(events, "RESUME"); err != nil {
		return err
	}

	// 3. system_powerdown: POWERDOWN on the listener connection.
	if _, err := execRawCmd(qmpSock, `{ "execute": "system_powerdown" }`); err != nil {
		return fmt.Errorf("system_powerdown: %v", err)
	}
	if _, err := waitEvent(events, "POWERDOWN"); err != nil {
		return err
	}

	// 4. Errors reach go-qemu as errors (it keeps only the desc, and takes an empty desc
	// for success); quit is answered and announced.
	if _, err := execRawCmd(qmpSock, `{ "execute": "no-such-command" }`); err == nil ||
		!strings.Contains(err.Error(), "has not been found") {
		return fmt.Errorf("unknown command: err %v, want CommandNotFound's desc", err)
	}
	if _, err := execRawCmd(qmpSock, `{ "execute": "quit" }`); err != nil {
		return fmt.Errorf("quit: %v", err)
	}
	e, err := waitEvent(events, "SHUTDOWN")
	if err != nil {
		return err
	}
	if e.Data["guest"] != false || e.Data["reason"] != "host-qmp-quit" {
		return fmt.Errorf("SHUTDOWN data %v", e.Data)
	}
	return nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: qmp-go QMP_SOCKET LISTENER_SOCKET")
		os.Exit(64)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("go-qemu pillar flow: ok")
}
