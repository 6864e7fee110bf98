#pragma once

// Lets spdlog/fmt print absl::string_view (Debian's abseil has its own
// string_view type, not std::string_view), e.g. absl::Status::message().

#include <absl/strings/string_view.h>
#include <fmt/format.h>

#include <string_view>

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<std::string_view> {
  template <typename Context>
  auto format(absl::string_view s, Context& ctx) const {
    return fmt::formatter<std::string_view>::format(std::string_view(s.data(), s.size()), ctx);
  }
};
