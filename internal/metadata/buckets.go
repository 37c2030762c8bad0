package metadata

// The whole bbolt schema, in one place so a change to it is reviewed as one.
//
//	berth                                  root bucket; nothing else lives at the top
//	├── version : uint64, big endian       schema version (schemaVersion); a newer one is refused
//	├── images                             one key per image name (a tag is an image name)
//	│   └── <name> : JSON Image            name is the canonical reference string
//	├── snapshots
//	│   └── <key>                          bucket per snapshot key
//	│       ├── info : JSON Snapshot
//	│       └── children                   reverse parent links, so a delete can refuse
//	│           └── <child key> : ""       a parent without scanning every snapshot
//	├── leases
//	│   └── <id> : JSON Lease              with its content digests and snapshot keys
//	├── containers
//	│   └── <id> : JSON Container          its rootfs is an active snapshot (a GC root)
//	└── names
//	    └── <name> : <container id>        so a name is unique in one transaction
//
// Values are JSON: records are small and few, and JSON stays readable with
// bbolt's own tools when a store must be inspected by hand.

import (
	"encoding/binary"
	"fmt"

	"github.com/berthdev/berth/internal/errdefs"
	bolt "go.etcd.io/bbolt"
)

// schemaVersion is bumped on any incompatible change to the tree above. An
// older berth refuses a newer store instead of misreading it.
const schemaVersion uint64 = 1

var (
	bucketRoot       = []byte("berth")
	keyVersion       = []byte("version")
	bucketImages     = []byte("images")
	bucketSnapshots  = []byte("snapshots")
	bucketLeases     = []byte("leases")
	bucketContainers = []byte("containers")
	bucketNames      = []byte("names")
	keyInfo          = []byte("info")
	bucketChildren   = []byte("children")
)

// buckets are the top-level buckets of one transaction.
type buckets struct {
	images, snapshots, leases, containers, names *bolt.Bucket
}

// initSchema creates the tree on a new store and checks the version of an
// existing one; it runs in Open's write transaction.
func initSchema(tx *bolt.Tx, path string) error {
	root, err := tx.CreateBucketIfNotExists(bucketRoot)
	if err != nil {
		return fmt.Errorf("metadata %s: create root bucket: %w", path, err)
	}
	if v := root.Get(keyVersion); v != nil {
		if err := checkVersion(v, path); err != nil {
			return err
		}
	} else {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], schemaVersion)
		if err := root.Put(keyVersion, b[:]); err != nil {
			return fmt.Errorf("metadata %s: write schema version: %w", path, err)
		}
	}
	// Buckets added later are created in older stores too: same version.
	for _, name := range [][]byte{bucketImages, bucketSnapshots, bucketLeases, bucketContainers, bucketNames} {
		if _, err := root.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("metadata %s: create bucket %s: %w", path, name, err)
		}
	}
	return nil
}

func checkVersion(v []byte, path string) error {
	if len(v) != 8 {
		return fmt.Errorf("metadata %s: schema version is %d bytes, want 8: %w", path, len(v), errdefs.ErrFailedPrecond)
	}
	got := binary.BigEndian.Uint64(v)
	if got > schemaVersion {
		return fmt.Errorf("metadata %s: schema version %d is newer than this berth supports (%d); upgrade berth: %w",
			path, got, schemaVersion, errdefs.ErrFailedPrecond)
	}
	return nil
}

// getBuckets finds the tree in a transaction. The version is checked again
// on every transaction because another process may have upgraded the store
// since this one opened it.
func getBuckets(tx *bolt.Tx, path string) (buckets, error) {
	root := tx.Bucket(bucketRoot)
	if root == nil {
		return buckets{}, fmt.Errorf("metadata %s: root bucket missing: %w", path, errdefs.ErrFailedPrecond)
	}
	if err := checkVersion(root.Get(keyVersion), path); err != nil {
		return buckets{}, err
	}
	b := buckets{
		images:     root.Bucket(bucketImages),
		snapshots:  root.Bucket(bucketSnapshots),
		leases:     root.Bucket(bucketLeases),
		containers: root.Bucket(bucketContainers),
		names:      root.Bucket(bucketNames),
	}
	if b.images == nil || b.snapshots == nil || b.leases == nil || b.containers == nil || b.names == nil {
		return buckets{}, fmt.Errorf("metadata %s: schema buckets missing: %w", path, errdefs.ErrFailedPrecond)
	}
	return b, nil
}
