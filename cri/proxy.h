#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>

#include <memory>
#include <string>
#include <unordered_set>

#include "cri/metrics.h"
#include "cri/rewrite.h"

namespace warmpool::cri {

// Forwards every RPC it receives, whatever its method, to the upstream CRI
// runtime as raw bytes: a CRI method added after this code was written still
// works. Unary and streaming calls go through one full-duplex pump, so one
// code path serves them all.
//
// What passes through unchanged: request and response bytes, request metadata
// (minus transport headers gRPC sets itself), response initial and trailing
// metadata, status code, message and details, the deadline and cancellation
// (propagated from the kubelet call to the upstream call). Nothing blocks a
// gRPC thread: every step is a callback, so a slow call never holds up others.
//
// Thread-safety: CreateReactor is called concurrently by gRPC; each call owns
// its state. `metrics` must outlive the service.
class PassthroughService final : public grpc::CallbackGenericService {
 public:
  // `policy` (optional, must outlive the service) may rewrite any call; without
  // one, or for methods it leaves alone, bytes pass untouched.
  PassthroughService(std::shared_ptr<grpc::Channel> upstream, RpcMetrics* metrics,
                     RewritePolicy* policy = nullptr);

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub stub_;
  RpcMetrics* metrics_;
  RewritePolicy* policy_;
  // Full names ("/runtime.v1.RuntimeService/Version") of the methods the CRI
  // declares unary: they take a shorter path. Any other method, including
  // ones this build has never heard of, goes through the streaming pump.
  std::unordered_set<std::string> unary_methods_;
};

}  // namespace warmpool::cri
