package kafka

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ApiVersions: v0-3. Lists exactly the keys registered in this package.
// A newer version gets a v0 answer with UNSUPPORTED_VERSION (KIP-511; see
// conn.handle). v4's only change is that clients may expect that answer;
// v5 checks a cluster id (KIP-1242) we do not keep.

func init() { regKey(18, 0, 3, handleApiVersions) }

func handleApiVersions(_ *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	for key, a := range apis {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = key, a.min, a.max
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	sort.Slice(resp.ApiKeys, func(i, j int) bool { return resp.ApiKeys[i].ApiKey < resp.ApiKeys[j].ApiKey })
	return now(resp), nil
}

func apiVersionsTooNew(a api) kmsg.Response {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	k := kmsg.NewApiVersionsResponseApiKey()
	k.ApiKey, k.MinVersion, k.MaxVersion = 18, a.min, a.max
	resp.ApiKeys = append(resp.ApiKeys, k)
	return resp
}
