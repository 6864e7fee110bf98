#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/status.h>

#include <functional>
#include <memory>
#include <optional>
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

  // Unary calls only, after OnRequest: whether warmpool answers the call
  // itself (a hand-off) or forwards it (the cold path). `done` is called
  // exactly once, from any thread, possibly before Decide returns; nullopt
  // means forward. Work that blocks belongs on the policy's own threads,
  // never on the calling (gRPC) thread. The default forwards at once.
  struct LocalAnswer {
    grpc::Status status;
    grpc::ByteBuffer response;  // sent when status is OK
  };
  using DecideCallback = std::function<void(std::optional<LocalAnswer>)>;
  virtual void Decide(const grpc::ByteBuffer& request, DecideCallback done) { done(std::nullopt); }
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
