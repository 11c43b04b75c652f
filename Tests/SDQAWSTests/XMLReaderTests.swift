import Foundation
import SDQAWS
import Testing

/// The XML reader behind the AWS Query and S3 clients, on the documents AWS writes and on
/// documents it must refuse.
@Suite struct XMLReaderTests {
    private func parse(_ text: String) -> XMLNode? { XMLNode.parse(Data(text.utf8)) }

    @Test func readsAQueryResponse() throws {
        let document = try #require(parse("""
            <?xml version="1.0" encoding="UTF-8"?>
            <PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
              <PublishResult>
                <MessageId>94f20ce6-13c5-43a0-9a9e-ca52d816e90b</MessageId>
              </PublishResult>
              <ResponseMetadata><RequestId>f187a3c1-376f-11df-8963-01868b7c937a</RequestId></ResponseMetadata>
            </PublishResponse>
            """))
        #expect(document.name == "PublishResponse")
        #expect(document.first("PublishResult")?.child("MessageId") == "94f20ce6-13c5-43a0-9a9e-ca52d816e90b")
        #expect(document.first("RequestId")?.text == "f187a3c1-376f-11df-8963-01868b7c937a")
        #expect(document.children.map(\.name) == ["PublishResult", "ResponseMetadata"])
    }

    @Test func readsRepeatedElementsEntitiesAndCDATA() throws {
        let document = try #require(parse("""
            <ListBucketResult><!-- two keys -->
              <Contents><Key>outputs/a&amp;b.png</Key><Size>12</Size></Contents>
              <Contents><Key>outputs/&lt;c&gt; &#233;&#x1F600;.png</Key><Size>7</Size></Contents>
              <Note><![CDATA[<raw> & kept]]></Note>
              <Empty/>
              <IsTruncated>false</IsTruncated>
            </ListBucketResult>
            """))
        #expect(document.all("Key").map(\.text) == ["outputs/a&b.png", "outputs/<c> é😀.png"])
        #expect(document.child("Note") == "<raw> & kept")
        #expect(document.child("Empty") == "")
        #expect(document.child("IsTruncated") == "false")
    }

    @Test func readsAnErrorDocumentWithAttributes() throws {
        let document = try #require(parse("<ErrorResponse><Error type='Sender'><Code>NotFound</Code><Message>Topic does not exist</Message></Error></ErrorResponse>"))
        #expect(document.first("Error")?.child("Code") == "NotFound")
        #expect(document.first("Message")?.text == "Topic does not exist")
    }

    @Test(arguments: [
        "", "plain text", "<a>", "<a></b>", "<a><b></a></b>", "<a/><b/>", "<a></a>trailing", "<a>&unknown;</a>",
        "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", "<a b=c></a>", "<a><![CDATA[never closed</a>", "<a>&#0;</a>", "</a>",
    ])
    func refusesWhatIsNotWellFormed(_ text: String) {
        #expect(parse(text) == nil, "accepted: \(text)")
    }

    @Test func escapesText() {
        #expect(xmlEscape(#"a<b>&"c""#) == "a&lt;b&gt;&amp;&quot;c&quot;")
    }
}
