// qmp-go: EVE pillar's QMP flow, with the QMP client pillar uses (github.com/digitalocean/
// go-qemu/qmp), against anything that serves QMP on two sockets: vmm's QmpServer
// (tests/tools/qmp_fake_domain), the vmm-anchor with a guest, and qemu-system-x86_64 -S
// -no-shutdown. Run by tests/integration/qmp_go_client.sh, pillar_go_qemu.sh, pillar_go_kvm.sh
// and bench/qmp_latency.sh:
//
//	qmp-go [-guest] [-bench N] [-serial FILE [-serial-text TEXT]] [-panic CORE] QMP_SOCKET LISTENER_SOCKET
//
// As pillar does: a new connection per command on QMP_SOCKET, query-status decoded strictly
// (only id and return; return only running, singlestep, status), and a separate long-lived
// connection on LISTENER_SOCKET that only reads events. Steps:
//  1. poll query-status until "prelaunch";
//  2. cont, expect "running" and RESUME; stop, expect "paused" and STOP; cont again;
//  3. system_powerdown, expect the POWERDOWN event on the listener connection; with -guest
//     (an ACPI guest that honours the button, e.g. tests/guests/powerdown.bin) also SHUTDOWN
//     {guest: true, reason: guest-shutdown}, then STOP, and run-state "shutdown" (-no-shutdown);
//  4. an unknown command is an error; quit is answered and gives SHUTDOWN host-qmp-quit.
// With -bench N it first times N rounds of each of query-status, query-cpus-fast and
// query-version on a fresh connection each (greeting, qmp_capabilities, command: what pillar
// pays per command) and prints "bench CMD median_us p90_us".
package main

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
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
//
// go-qemu's Connect takes the first message after its qmp_capabilities for the reply: an event
// the server sends in that instant (QEMU does, 1 run in 10-20 here, whatever event it is
// broadcasting then) is taken for it, and the real reply, {"return": {}}, then comes back from
// Run as the answer to query-status. Pillar polls the status again on its next tick; this asks
// again at once, at most twice, and says so on stderr.
func queryStatus(socket string) (string, error) {
	raw, err := execRawCmd(socket, `{ "execute": "query-status" }`)
	for retry := 0; retry < 2 && err == nil && bytes.Equal(bytes.TrimSpace(raw), []byte(`{"return": {}}`)); retry++ {
		fmt.Fprintln(os.Stderr, "note: go-qemu answered query-status with the qmp_capabilities reply; asking again")
		raw, err = execRawCmd(socket, `{ "execute": "query-status" }`)
	}
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

// eventTimeout bounds a wait for an event: long enough for a TCG guest on a loaded CI machine
// (this is a hang detector, not a latency check).
const eventTimeout = 30 * time.Second

func waitEvent(events <-chan qmp.Event, name string) (qmp.Event, error) {
	deadline := time.After(eventTimeout)
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
			return qmp.Event{}, fmt.Errorf("no %s event within %v", name, eventTimeout)
		}
	}
}

// bench times n fresh-connection round trips of cmd and prints the median and 90th percentile.
func bench(socket, cmd string, n int) error {
	d := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := execRawCmd(socket, `{ "execute": "`+cmd+`" }`); err != nil {
			return fmt.Errorf("%s: %v", cmd, err)
		}
		d = append(d, time.Since(t0))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	fmt.Printf("bench %s %d %d\n", cmd, d[n/2].Microseconds(), d[n*9/10].Microseconds())
	return nil
}

func expectStatus(socket, want string) error {
	status, err := queryStatus(socket)
	if err != nil || status != want {
		return fmt.Errorf("status %q, err %v; want %q", status, err, want)
	}
	fmt.Println("status", status)
	return nil
}

// waitFile waits until path contains text (the guest's serial output), if a path is given.
func waitFile(path, text string) error {
	if path == "" {
		return nil
	}
	for i := 0; i < 200; i++ {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), text) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%q never appeared in %s", text, path)
}

// openListener is pillar's long-lived event connection on the other socket.
func openListener(socket string) (*qmp.SocketMonitor, <-chan qmp.Event, error) {
	listener, err := qmp.NewSocketMonitor("unix", socket, sockTimeout)
	if err != nil {
		return nil, nil, err
	}
	if err := listener.Connect(); err != nil {
		return nil, nil, fmt.Errorf("listener connect: %v", err)
	}
	events, err := listener.Events(nil)
	if err != nil {
		listener.Disconnect()
		return nil, nil, err
	}
	return listener, events, nil
}

// closeListener disconnects the event connection. go-qemu's reader blocks handing over an event
// nobody reads, and Disconnect waits for that reader: after a failed step (an event left
// unread) it would hang for ever and hide the step's error. So the events are drained first.
func closeListener(listener *qmp.SocketMonitor, events <-chan qmp.Event) {
	go func() {
		for range events {
		}
	}()
	listener.Disconnect()
}

// runPanic is pillar's crash path (qmp_crash.go) for tests/guests/panic.bin: the guest reports
// a panic through pvpanic; GUEST_PANICKED and run-state guest-panicked follow; guest memory is
// dumped (paging false, detached, to a file) while query-dump is polled until it completes and
// DUMP_COMPLETED arrives; the core's PT_LOAD at guest-physical 0x200000 holds the guest's
// pattern (read with Go's debug/elf); quit ends it.
func runPanic(qmpSock, listenerSock, core string) error {
	for i := 0; i < 100; i++ {
		if status, err := queryStatus(qmpSock); err == nil && status == "prelaunch" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	listener, events, err := openListener(listenerSock)
	if err != nil {
		return err
	}
	defer closeListener(listener, events)
	if _, err := execRawCmd(qmpSock, `{ "execute": "cont" }`); err != nil {
		return fmt.Errorf("cont: %v", err)
	}
	if _, err := waitEvent(events, "GUEST_PANICKED"); err != nil {
		return err
	}
	if err := expectStatus(qmpSock, "guest-panicked"); err != nil {
		return err
	}
	cmd := fmt.Sprintf(`{ "execute": "dump-guest-memory", "arguments": { "paging": false, "detach": true, "protocol": "file:%s" } }`, core)
	if _, err := execRawCmd(qmpSock, cmd); err != nil {
		return fmt.Errorf("dump-guest-memory: %v", err)
	}
	for i := 0; ; i++ {
		raw, err := execRawCmd(qmpSock, `{ "execute": "query-dump" }`)
		if err != nil {
			return fmt.Errorf("query-dump: %v", err)
		}
		var r struct {
			Return struct {
				Status    string `json:"status"`
				Completed uint64 `json:"completed"`
				Total     uint64 `json:"total"`
			} `json:"return"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		if r.Return.Status == "completed" && r.Return.Completed == r.Return.Total {
			fmt.Printf("query-dump completed %d bytes\n", r.Return.Total)
			break
		}
		if r.Return.Status != "active" || i > 600 {
			return fmt.Errorf("query-dump: %s", raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e, err := waitEvent(events, "DUMP_COMPLETED")
	if err != nil {
		return err
	}
	if res, _ := e.Data["result"].(map[string]interface{}); res == nil || res["status"] != "completed" {
		return fmt.Errorf("DUMP_COMPLETED %v", e.Data)
	}
	f, err := elf.Open(core)
	if err != nil {
		return fmt.Errorf("the core: %v", err)
	}
	defer f.Close()
	// QEMU writes an EM_386 core when the first vCPU is not in long mode (this 32-bit guest);
	// vmm-anchor always writes EM_X86_64 (the format crash and gdb expect for a 64-bit kernel).
	if f.Type != elf.ET_CORE || (f.Machine != elf.EM_X86_64 && f.Machine != elf.EM_386) {
		return fmt.Errorf("the core is %v %v, want ET_CORE EM_X86_64 or EM_386", f.Type, f.Machine)
	}
	fmt.Println("core", f.Class, f.Machine)
	found := false
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Paddr > 0x200000 || p.Paddr+p.Filesz < 0x200000+18 {
			continue
		}
		b := make([]byte, 18)
		if _, err := p.ReadAt(b, int64(0x200000-p.Paddr)); err != nil {
			return err
		}
		if string(b) != "VMM-PANIC-PATTERN-" {
			return fmt.Errorf("core at 0x200000: %q", b)
		}
		found = true
	}
	if !found {
		return fmt.Errorf("no PT_LOAD holds guest-physical 0x200000")
	}
	fmt.Println("core holds the guest's pattern at 0x200000")
	if _, err := execRawCmd(qmpSock, `{ "execute": "quit" }`); err != nil {
		return fmt.Errorf("quit: %v", err)
	}
	_, err = waitEvent(events, "SHUTDOWN")
	return err
}

func run(qmpSock, listenerSock string, guest bool, benchRounds int, serialFile, serialText string) error {
	// 1. Poll until the domain is there and in prelaunch.
	var status string
	var err error
	for i := 0; i < 400; i++ {
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
	if benchRounds > 0 {
		for _, cmd := range []string{"query-status", "query-cpus-fast", "query-version"} {
			if err := bench(qmpSock, cmd, benchRounds); err != nil {
				return err
			}
		}
	}

	// The long-lived event reader, on the other socket.
	listener, events, err := openListener(listenerSock)
	if err != nil {
		return err
	}
	defer closeListener(listener, events)

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
	if _, err := execRawCmd(qmpSock, `{ "execute": "stop" }`); err != nil {
		return fmt.Errorf("stop: %v", err)
	}
	if err := expectStatus(qmpSock, "paused"); err != nil {
		return err
	}
	if _, err := waitEvent(events, "STOP"); err != nil {
		return err
	}
	if _, err := execRawCmd(qmpSock, `{ "execute": "cont" }`); err != nil {
		return fmt.Errorf("cont: %v", err)
	}
	if err := expectStatus(qmpSock, "running"); err != nil {
		return err
	}

	// 3. system_powerdown: POWERDOWN on the listener connection.
	if err := waitFile(serialFile, serialText); err != nil {
		return err
	}
	if _, err := execRawCmd(qmpSock, `{ "execute": "system_powerdown" }`); err != nil {
		return fmt.Errorf("system_powerdown: %v", err)
	}
	if _, err := waitEvent(events, "POWERDOWN"); err != nil {
		return err
	}
	if guest {
		e, err := waitEvent(events, "SHUTDOWN")
		if err != nil {
			return err
		}
		if e.Data["guest"] != true || e.Data["reason"] != "guest-shutdown" {
			return fmt.Errorf("SHUTDOWN data %v, want guest-shutdown", e.Data)
		}
		// -no-shutdown (on_poweroff: pause): the VM then stops, STOP after SHUTDOWN. Waited for
		// before the next connection: go-qemu's Connect takes the first message after its
		// qmp_capabilities for the reply, so an event that QEMU sends right then would make the
		// real reply ({"return": {}}) the answer to query-status (seen 1 run in 10-20 here).
		if _, err := waitEvent(events, "STOP"); err != nil {
			return err
		}
		if err := expectStatus(qmpSock, "shutdown"); err != nil {
			return err
		}
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
	guest := flag.Bool("guest", false, "the guest powers off on the ACPI button: expect SHUTDOWN guest-shutdown")
	rounds := flag.Int("bench", 0, "time N fresh-connection round trips per command first")
	serialFile := flag.String("serial", "", "before system_powerdown, wait until this file (the guest's serial output) ...")
	serialText := flag.String("serial-text", "powerdown: waiting", "... contains this text")
	panicCore := flag.String("panic", "", "pillar's crash path instead (panic.bin): dump guest memory to this file")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: qmp-go [-guest] [-bench N] [-serial FILE [-serial-text TEXT]] QMP_SOCKET LISTENER_SOCKET")
		os.Exit(64)
	}
	var err error
	if *panicCore != "" {
		err = runPanic(flag.Arg(0), flag.Arg(1), *panicCore)
	} else {
		err = run(flag.Arg(0), flag.Arg(1), *guest, *rounds, *serialFile, *serialText)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("go-qemu pillar flow: ok")
}
