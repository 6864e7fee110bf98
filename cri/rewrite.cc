#include "cri/rewrite.h"

#include <grpcpp/impl/codegen/proto_utils.h>

namespace warmpool::cri {

using Traits = grpc::SerializationTraits<google::protobuf::Message>;

grpc::Status ParseMessage(const grpc::ByteBuffer& buffer, google::protobuf::Message* message) {
  grpc::ByteBuffer copy(buffer);  // Deserialize consumes it; slices are shared, not copied
  grpc::Status s = Traits::Deserialize(&copy, message);
  if (!s.ok()) {
    return grpc::Status(
        grpc::StatusCode::INTERNAL,
        "warmpoold: cannot parse " + message->GetTypeName() + ": " + s.error_message());
  }
  return s;
}

grpc::Status SerializeMessage(const google::protobuf::Message& message, grpc::ByteBuffer* buffer) {
  bool own = false;
  buffer->Clear();  // gRPC's serializer writes only into an empty buffer
  return Traits::Serialize(message, buffer, &own);
}

}  // namespace warmpool::cri
