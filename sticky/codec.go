package sticky

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"hash"
	"sync"
)

// The load-balancer cookie's value, version 1, is base64url (unpadded) of
//
//	offset  size  field
//	0       1     version, 1
//	1       4     key fingerprint: which key made it (not secret)
//	5       8     expiry, Unix seconds, big endian
//	13      1     b, the number of 32-byte blocks of the body, 1..maxBlocks
//	14      32·b  body, encrypted: n (1 byte, 1..MaxIDLen), the n bytes of
//	              the target ID, zeros
//	14+32·b 16    tag: HMAC-SHA256, truncated to 128 bits
//
// The tag authenticates the cookie's name, the header and the body in
// clear; the body is then encrypted with a keystream drawn from the tag
// (HMAC-SHA256 of the tag and a block counter under a second key). This is
// the SIV construction (RFC 5297's idea, with HMAC as both MAC and PRF): a
// deterministic authenticated encryption, so the value shows nothing of the
// target but the bucket of its ID's length (whatever the ID looks like: an
// ID can be an address, and a name like "db-eu-3" says too much), and
// nobody without the key can make a value that verifies, or change one byte
// of a value without the tag failing. The tag is checked with hmac.Equal,
// in constant time. Two cookies for the same target and the same expiry
// second are equal, which shows no more than the clients could tell by
// comparing their targets' answers.
//
// The layout and the key derivation labels MUST NOT change without a new
// version byte: several nodes, and nodes of different releases, must read
// each other's cookies. TestCookieGolden guards them.
const (
	cookieVersion = 1
	fpLen         = 4
	headerLen     = 1 + fpLen + 8 + 1
	blockLen      = 32
	tagLen        = 16

	// MaxIDLen is the longest target ID a load-balancer cookie carries, in
	// bytes. Remember refuses longer IDs (Stats.Refused).
	MaxIDLen = 128

	maxBlocks   = (1 + MaxIDLen + blockLen - 1) / blockLen
	minRawLen   = headerLen + blockLen + tagLen
	maxRawLen   = headerLen + maxBlocks*blockLen + tagLen
	maxValueLen = (maxRawLen*8 + 5) / 6 // base64url of maxRawLen bytes, unpadded

	labelMAC = "lbkit sticky cookie v1: tag"
	labelEnc = "lbkit sticky cookie v1: body keystream"
	labelFP  = "lbkit sticky cookie v1: key fingerprint"
)

// key is one load-balancer cookie key with the keys derived from it. It is
// immutable once made and shared by every key set that holds it.
type key struct {
	fp  [fpLen]byte
	mac []byte // keys the tag
	enc []byte // keys the ID's keystream
	// pool holds scratch states with HMACs already keyed: hash.Hash values
	// are not safe for concurrent use, and a pool makes sealing and opening
	// allocation-free.
	pool sync.Pool
}

// scratch is one goroutine's working state for a key.
type scratch struct {
	mac, enc hash.Hash
	raw      [maxRawLen]byte
	sum      [sha256.Size]byte
	ctr      [1]byte
	line     []byte // a Set-Cookie line being built; its capacity is reused
}

// newKey derives a key's sub-keys and fingerprint from a secret with HKDF
// (RFC 5869), one label each, so that no two uses share key material.
func newKey(secret []byte) (*key, error) {
	k := &key{}
	var err error
	if k.mac, err = hkdf.Key(sha256.New, secret, nil, labelMAC, sha256.Size); err != nil {
		return nil, err
	}
	if k.enc, err = hkdf.Key(sha256.New, secret, nil, labelEnc, sha256.Size); err != nil {
		return nil, err
	}
	fp, err := hkdf.Key(sha256.New, secret, nil, labelFP, fpLen)
	if err != nil {
		return nil, err
	}
	copy(k.fp[:], fp)
	k.pool.New = func() any {
		return &scratch{mac: hmac.New(sha256.New, k.mac), enc: hmac.New(sha256.New, k.enc)}
	}
	return k, nil
}

// same reports whether k and o were derived from the same secret.
func (k *key) same(o *key) bool { return subtle.ConstantTimeCompare(k.mac, o.mac) == 1 }

func (k *key) get() *scratch   { return k.pool.Get().(*scratch) }
func (k *key) put(st *scratch) { k.pool.Put(st) }

// seal writes the binary cookie for id (1..MaxIDLen bytes) expiring at exp
// into st.raw and returns it. ctx is the cookie's name and a 0 byte.
func (k *key) seal(st *scratch, ctx []byte, id string, exp int64) []byte {
	blocks := (1 + len(id) + blockLen - 1) / blockLen
	end := headerLen + blocks*blockLen
	raw := st.raw[:end+tagLen]
	raw[0] = cookieVersion
	copy(raw[1:1+fpLen], k.fp[:])
	binary.BigEndian.PutUint64(raw[1+fpLen:], uint64(exp))
	raw[headerLen-1] = byte(blocks)
	body := raw[headerLen:end]
	body[0] = byte(len(id))
	clear(body[1+copy(body[1:], id):])
	tag := raw[end:]
	copy(tag, st.tag(ctx, raw[:end]))
	st.xorKeystream(tag, body)
	return raw
}

// open decrypts and authenticates the binary cookie in st.raw[:size],
// whose header and length the caller has checked, and returns the target
// ID in st.raw, or false if the tag is wrong.
func (k *key) open(st *scratch, ctx []byte, size int) ([]byte, bool) {
	end := size - tagLen
	raw := st.raw[:size]
	body, tag := raw[headerLen:end], raw[end:]
	st.xorKeystream(tag, body)
	if !hmac.Equal(st.tag(ctx, raw[:end])[:tagLen], tag) {
		return nil, false
	}
	n := int(body[0])
	if n == 0 || n > MaxIDLen || 1+n > len(body) {
		return nil, false // authentic, so only a broken key gets here
	}
	return body[1 : 1+n], true
}

// tag returns HMAC-SHA256(mac key, ctx || msg) in st.sum.
func (st *scratch) tag(ctx, msg []byte) []byte {
	st.mac.Reset()
	st.mac.Write(ctx)
	st.mac.Write(msg)
	return st.mac.Sum(st.sum[:0])
}

// xorKeystream XORs data with the keystream of iv: block i is
// HMAC-SHA256(enc key, iv || i).
func (st *scratch) xorKeystream(iv, data []byte) {
	for off := 0; off < len(data); off += sha256.Size {
		st.enc.Reset()
		st.enc.Write(iv)
		st.ctr[0] = byte(off / sha256.Size)
		st.enc.Write(st.ctr[:])
		ks := st.enc.Sum(st.sum[:0])
		subtle.XORBytes(data[off:], data[off:], ks)
	}
}
