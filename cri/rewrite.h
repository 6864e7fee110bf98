#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/status.h>

#include <memory>
#include <string>

namespace warmpool::cri {

// Changes what one forwarded call carries, message by message: how warmpool
// hides pool objects from kubelet's reads (and, for adopted pods, shows them
// as kubelet made them). Runs on gRPC's callback threads, so it must not
// block: parse, edit, serialise, consult in-memory state; nothing else.
class CallRewriter {
 public:
  virtual ~CallRewriter() = default;

  // A request message on its way upstream; may be edited in place. A non-OK
  // status answers the call with it and nothing is forwarded.
  virtual grpc::Status OnRequest(grpc::ByteBuffer* message) { return grpc::Status::OK; }

  // A response message on its way to kubelet; may be edited in place. `*drop`
  // set to true skips the message (only meaningful on streams). A non-OK
  // status ends the call with it.
  virtual grpc::Status OnResponse(grpc::ByteBuffer* message, bool* drop) {
    return grpc::Status::OK;
  }
};

// Chooses the rewriter of each call. Thread-safe; called once per call.
class RewritePolicy {
 public:
  virtual ~RewritePolicy() = default;
  // A new rewriter for one call of `method` ("/runtime.v1.RuntimeService/
  // ListPodSandbox"), or null: forward the bytes untouched.
  virtual std::unique_ptr<CallRewriter> ForMethod(const std::string& method) = 0;
};

// Wire helpers for rewriters. Parse fails with INTERNAL naming the type.
grpc::Status ParseMessage(const grpc::ByteBuffer& buffer, google::protobuf::Message* message);
grpc::Status SerializeMessage(const google::protobuf::Message& message, grpc::ByteBuffer* buffer);

}  // namespace warmpool::cri
