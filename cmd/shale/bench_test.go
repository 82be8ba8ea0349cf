package main

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/shalelog/shale/tier/tiertest"
)

// BenchmarkShale runs `shale bench` against a real MinIO on loopback, at 8
// and at 512 partitions. It prints the bench table and JSON line; it makes
// no assertions (machines are noisy: read the ratios to the raw store).
// Run it with `make bench`.
func BenchmarkShale(b *testing.B) {
	ep := tiertest.StartMinIO(b)
	b.Setenv("MINIO_ROOT_USER", ep.AccessKey)
	b.Setenv("MINIO_ROOT_PASSWORD", ep.SecretKey)
	for _, parts := range []int{8, 512} {
		b.Run(fmt.Sprintf("partitions=%d", parts), func(b *testing.B) {
			for i := range b.N {
				store := fmt.Sprintf("minio://%s/%s/bench-%d-%d", ep.Addr, ep.Bucket, parts, i)
				args := []string{"--store", store, "--partitions", fmt.Sprint(parts)}
				if code := run(context.Background(), append([]string{"bench"}, args...), nil, os.Stdout, os.Stderr); code != 0 {
					b.Fatalf("shale bench exited %d", code)
				}
			}
		})
	}
}
