// The Azure backend's readers of what the service answers (no service needed).
#include "storage/azblob/azblob_rest.h"

#include <gtest/gtest.h>

namespace ds::azblob {
namespace {

constexpr char kSha[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

TEST(BlobListTest, ReadsNamesSizesHashesMtimesAndTheNextMarker) {
  const std::string body = std::string(
      "<?xml version=\"1.0\"?><EnumerationResults><Blobs>"
      "<Blob><Name>lab/a&amp;b.spc</Name><Properties><Content-Length>12</Content-Length>"
      "<Last-Modified>Wed, 02 Dec 2026 20:00:00 GMT</Last-Modified></Properties>"
      "<Metadata><sha256>") + kSha + "</sha256><mtime_ns>1700000000123456789</mtime_ns></Metadata></Blob>"
      "<Blob><Name>lab/b.spc</Name><Properties><Content-Length>3</Content-Length>"
      "<Last-Modified>Wed, 02 Dec 2026 20:00:00 GMT</Last-Modified></Properties>"
      "<Metadata><sha256>NOT-A-HASH</sha256></Metadata></Blob>"
      "<Blob><Name/></Blob></Blobs><NextMarker>m2</NextMarker></EnumerationResults>";
  const BlobListPage page = ParseBlobList(body);
  ASSERT_EQ(page.blobs.size(), 2u);  // the nameless one is left out
  EXPECT_EQ(page.blobs[0].name, "lab/a&b.spc");
  EXPECT_EQ(page.blobs[0].info.size, 12u);
  EXPECT_EQ(page.blobs[0].info.sha256, kSha);
  EXPECT_EQ(page.blobs[0].info.mtime_ns, 1700000000123456789);
  EXPECT_EQ(page.blobs[1].info.sha256, "");                          // malformed: no hash
  EXPECT_EQ(page.blobs[1].info.mtime_ns, 1796241600LL * 1000000000);  // from Last-Modified
  EXPECT_EQ(page.next_marker, "m2");
}

// Found by fuzz_azblob_list: a Last-Modified year past 2262 overflowed the nanoseconds.
TEST(BlobListTest, ADateNanosecondsCannotHoldIsNoDate) {
  EXPECT_FALSE(ParseHttpDate("Fri, 31 Dec 3349 23:59:59 GMT").has_value());
  EXPECT_FALSE(ParseHttpDate("Thu, 01 Jan 1900 00:00:00 GMT").has_value());
  EXPECT_EQ(ParseHttpDate("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
  const BlobListPage page = ParseBlobList(
      "<Blob><Name>x</Name><Properties><Last-Modified>Fri, 31 Dec 3349 23:59:59 GMT"
      "</Last-Modified></Properties></Blob>");
  ASSERT_EQ(page.blobs.size(), 1u);
  EXPECT_EQ(page.blobs[0].info.mtime_ns, 0);
}

}  // namespace
}  // namespace ds::azblob
