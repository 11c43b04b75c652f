import SDQAWS

/// Any JSON value (defined beside the AWS clients, which speak JSON too; the name is the
/// platform's as well, so services need not import the AWS module for it).
public typealias JSONValue = SDQAWS.JSONValue
