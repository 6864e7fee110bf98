#include "test/integration/cri_compare.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <memory>
#include <set>

namespace warmpool::testing {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

const std::set<std::string>& TimeFields() {
  static const std::set<std::string> names = {"created_at", "started_at", "finished_at",
                                              "timestamp"};
  return names;
}

std::string Substitute(std::string s, const Substitutions& sorted) {
  for (const auto& [from, to] : sorted) {
    if (from.empty()) continue;
    for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
      s.replace(pos, from.size(), to);
    }
  }
  return s;
}

// Visits every set field below `msg`; `fn(msg, field, index)` with index -1
// for singular fields.
template <typename Fn>
void Walk(Message* msg, const Fn& fn) {
  const Reflection* refl = msg->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  refl->ListFields(*msg, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->is_repeated()) {
      for (int i = 0; i < refl->FieldSize(*msg, f); ++i) {
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          Walk(refl->MutableRepeatedMessage(msg, f, i), fn);
        } else {
          fn(msg, f, i);
        }
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      Walk(refl->MutableMessage(msg, f), fn);
    } else {
      fn(msg, f, -1);
    }
  }
}

}  // namespace

bool Normalise(Message* msg, const Substitutions& subs) {
  Substitutions sorted = subs;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  // Strings (map keys and values included) go through the text form, so the
  // map invariants are rebuilt by the parser.
  std::string text;
  google::protobuf::TextFormat::PrintToString(*msg, &text);
  // Text format escapes non-printable bytes; the substitutions are plain.
  text = Substitute(text, sorted);
  std::unique_ptr<Message> rewritten(msg->New());
  if (!google::protobuf::TextFormat::ParseFromString(text, rewritten.get())) return false;
  msg->CopyFrom(*rewritten);

  Walk(msg, [](Message* m, const FieldDescriptor* f, int index) {
    if (index >= 0 || !TimeFields().count(f->name())) return;
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT64 ||
        f->cpp_type() == FieldDescriptor::CPPTYPE_UINT64) {
      m->GetReflection()->ClearField(m, f);
    }
  });
  return true;
}

void ClearNumbers(Message* msg) {
  Walk(msg, [](Message* m, const FieldDescriptor* f, int index) {
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64:
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64:
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT:
        if (index < 0) m->GetReflection()->ClearField(m, f);
        break;
      default:
        break;
    }
  });
}

namespace {

std::string DiffWith(const Message& want, const Message& got, bool ignore_order) {
  google::protobuf::util::MessageDifferencer differencer;
  std::string report;
  differencer.ReportDifferencesToString(&report);
  if (ignore_order) {
    differencer.set_repeated_field_comparison(google::protobuf::util::MessageDifferencer::AS_SET);
  }
  if (differencer.Compare(want, got)) return "";
  return report;
}

}  // namespace

std::string Diff(const Message& want, const Message& got) { return DiffWith(want, got, false); }

std::string DiffIgnoringOrder(const Message& want, const Message& got) {
  return DiffWith(want, got, true);
}

}  // namespace warmpool::testing
