// A List Blobs answer, as the Azure backend reads it (storage is not trusted: a hostile or broken
// endpoint may answer anything). No bytes crash the reader; every blob it yields has a name, and
// a hash only when it is well formed.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "storage/azblob/azblob_rest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const ds::azblob::BlobListPage page = ds::azblob::ParseBlobList(body);
  for (const auto& blob : page.blobs) {
    if (blob.name.empty() || blob.info.key != blob.name) __builtin_trap();
    if (!blob.info.sha256.empty() && blob.info.sha256.size() != 64) __builtin_trap();
  }
  (void)ds::azblob::XmlUnescape(body);
  return 0;
}
