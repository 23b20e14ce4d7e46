package hub

import (
	"bytes"
	"testing"
)

// frame builds a websocket frame header + payload.
func frame(opcode byte, payload []byte, masked bool) []byte {
	var b bytes.Buffer
	b.WriteByte(0x80 | opcode)
	maskBit := byte(0)
	if masked {
		maskBit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b.WriteByte(maskBit | byte(n))
	case n < 65536:
		b.WriteByte(maskBit | 126)
		b.Write([]byte{byte(n >> 8), byte(n)})
	default:
		b.WriteByte(maskBit | 127)
		for i := 7; i >= 0; i-- {
			b.WriteByte(byte(uint64(n) >> (8 * i)))
		}
	}
	if masked {
		b.Write([]byte{1, 2, 3, 4})
	}
	b.Write(payload)
	return b.Bytes()
}

func TestFrameScannerTellsDataFromControl(t *testing.T) {
	ping := frame(0x9, []byte("keepalive"), true)
	pong := frame(0xA, nil, false)
	text := frame(0x1, []byte("print(6*7)"), true)
	big := frame(0x2, bytes.Repeat([]byte{0x89}, 70000), false) // payload looks like ping headers
	cases := []struct {
		name   string
		stream [][]byte
		want   []bool
	}{
		{"pings only", [][]byte{ping, pong, ping}, []bool{false, false, false}},
		{"text", [][]byte{text}, []bool{true}},
		{"ping then text", [][]byte{append(append([]byte{}, ping...), text...)}, []bool{true}},
		{"big binary payload is skipped", [][]byte{big, ping}, []bool{true, false}},
		{"header split byte by byte", splitBytes(ping), make([]bool, len(ping))},
	}
	for _, c := range cases {
		var f frameScanner
		for i, chunk := range c.stream {
			if got := f.scan(chunk); got != c.want[i] {
				t.Errorf("%s: chunk %d: data=%v, want %v", c.name, i, got, c.want[i])
			}
		}
	}
	// A data frame split across reads counts in every part.
	var f frameScanner
	parts := [][]byte{text[:1], text[1:4], text[4:]}
	seen := false
	for _, p := range parts {
		seen = f.scan(p) || seen
	}
	if !seen {
		t.Error("split text frame not seen as data")
	}
	if f.scan(ping) {
		t.Error("ping after split text frame counted as data")
	}
}

func splitBytes(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}
