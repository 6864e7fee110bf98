#include "cri/upstream.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

namespace warmpool::cri {

std::string UnixPath(const std::string& endpoint) {
  std::string path = endpoint;
  if (path.rfind("unix://", 0) == 0) {
    path = path.substr(7);
  } else if (path.rfind("unix:", 0) == 0) {
    path = path.substr(5);
  }
  return path;
}

std::string UnixTarget(const std::string& endpoint) { return "unix:" + UnixPath(endpoint); }

std::shared_ptr<grpc::Channel> DialUpstream(const std::string& endpoint) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // One connection carries every call; HTTP/2 multiplexes them. Keep it the
  // only one: a fresh subchannel per call would cost a connect per RPC.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetString(GRPC_ARG_PRIMARY_USER_AGENT_STRING, "warmpoold");
  return grpc::CreateCustomChannel(UnixTarget(endpoint), grpc::InsecureChannelCredentials(), args);
}

}  // namespace warmpool::cri
