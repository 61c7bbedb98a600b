#include "agent/journal_codec.h"

#include <cstdint>

namespace ds::journal_codec {
namespace {

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void PutString(std::string& out, std::string_view v) {
  PutVarint(out, v.size());
  out.append(v);
}
uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

// Reads what PutVarint and PutString wrote; false once the input is short or malformed.
class EntryReader {
 public:
  explicit EntryReader(std::string_view in) : in_(in) {}
  bool done() const { return in_.empty(); }
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (in_.empty()) return false;
      const auto byte = static_cast<unsigned char>(in_.front());
      in_.remove_prefix(1);
      *v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }
  bool String(std::string* v) {
    uint64_t n = 0;
    if (!Varint(&n) || n > in_.size()) return false;
    v->assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }

 private:
  std::string_view in_;
};

}  // namespace

void AppendResult(std::string& out, const protocol::FileResult& r) {
  PutString(out, r.path);
  PutString(out, r.status);
  PutVarint(out, r.size);
  PutVarint(out, ZigZag(r.mtime_ns));
  PutString(out, r.sha256);
  PutString(out, r.error);
  PutString(out, r.kept_version);
}

void AppendInFlight(std::string& out, std::string_view path, std::string_view key) {
  PutString(out, path);
  PutString(out, key);
}

bool DecodeResults(std::string_view in, std::vector<protocol::FileResult>* out) {
  EntryReader reader(in);
  while (!reader.done()) {
    protocol::FileResult r;
    uint64_t mtime = 0;
    if (!reader.String(&r.path) || !reader.String(&r.status) || !reader.Varint(&r.size) ||
        !reader.Varint(&mtime) || !reader.String(&r.sha256) || !reader.String(&r.error) ||
        !reader.String(&r.kept_version)) {
      return false;
    }
    r.mtime_ns = UnZigZag(mtime);
    out->push_back(std::move(r));
  }
  return true;
}

bool DecodeInFlight(std::string_view in, std::vector<std::pair<std::string, std::string>>* out) {
  EntryReader reader(in);
  while (!reader.done()) {
    std::pair<std::string, std::string> mark;
    if (!reader.String(&mark.first) || !reader.String(&mark.second)) return false;
    out->push_back(std::move(mark));
  }
  return true;
}

}  // namespace ds::journal_codec
