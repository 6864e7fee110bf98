#pragma once

#include <grpcpp/channel.h>

#include <memory>
#include <string>

namespace warmpool::cri {

// Normalises a CRI endpoint as kubelet and containerd spell it ("/run/x.sock",
// "unix:///run/x.sock", "unix:/run/x.sock") to the gRPC target "unix:/run/x.sock".
std::string UnixTarget(const std::string& endpoint);

// The file-system path of a unix endpoint ("unix:///a/b" -> "/a/b").
std::string UnixPath(const std::string& endpoint);

// Opens the channel to the real CRI runtime. The channel reconnects by itself
// (short back-off, so a restarted containerd is found again within a second);
// calls made while the runtime is down fail fast with UNAVAILABLE, exactly as
// kubelet's own calls to containerd would. Message sizes are not limited here:
// the limits in force are kubelet's and containerd's own.
std::shared_ptr<grpc::Channel> DialUpstream(const std::string& endpoint);

}  // namespace warmpool::cri
