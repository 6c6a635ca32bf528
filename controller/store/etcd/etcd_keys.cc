#include "controller/store/etcd/etcd_keys.h"

#include "absl/strings/str_format.h"

namespace sesame::controller {

std::string EtcdKeys::Number(uint64_t n) { return absl::StrFormat("%020u", n); }

}  // namespace sesame::controller
