import Foundation
import SDQPlatform

/// What the emulator needs from a ComfyUI API-format workflow (node id → `{class_type, inputs}`):
/// the image size and batch (`EmptyLatentImage`), sampling (`KSampler`: seed, steps, cfg,
/// sampler), prompts (the `CLIPTextEncode` nodes wired to the sampler), and the checkpoint.
/// Also checks the workflow the way ComfyUI does before queueing it: every node has a known
/// `class_type` and every link names an existing node.
package struct ComfyWorkflow: Sendable {
    /// Node classes the emulator knows (the core text-to-image graph and image loading/saving).
    package static let knownClasses: Set<String> = [
        "KSampler", "KSamplerAdvanced", "CheckpointLoaderSimple", "EmptyLatentImage", "CLIPTextEncode", "VAEDecode",
        "VAEEncode", "SaveImage", "PreviewImage", "LoadImage", "LatentUpscale", "ImageScale",
    ]

    /// A node that failed validation, as ComfyUI's `node_errors` reports it.
    package struct NodeError: Error, Sendable {
        package var node: String
        package var classType: String
        package var message: String
        /// The node names a class ComfyUI does not have: ComfyUI reports it outside `node_errors`
        /// (in `error.details`, as `Node ID '#<id>'`).
        package var unknownClass = false
    }

    package var width = 512
    package var height = 512
    package var batchSize = 1
    package var seed: Int64 = 0
    package var steps = 20
    package var cfg = 7.0
    package var sampler = "euler"
    package var positive = ""
    package var negative = ""
    package var checkpoint = ""

    /// Reads and checks `workflow`; the first invalid node (by id) is the error.
    package static func parse(_ workflow: [String: JSONValue]) -> Result<ComfyWorkflow, NodeError> {
        guard !workflow.isEmpty else { return .failure(NodeError(node: "", classType: "", message: "the workflow has no nodes")) }
        var parsed = ComfyWorkflow()
        for (id, node) in workflow.sorted(by: { $0.key < $1.key }) {
            guard let type = node["class_type"]?.stringValue else {
                return .failure(NodeError(node: id, classType: "", message: "node \(id) has no class_type"))
            }
            guard knownClasses.contains(type) else {
                return .failure(NodeError(node: id, classType: type, message: "Cannot execute because node \(type) does not exist.", unknownClass: true))
            }
            if case .object(let inputs)? = node["inputs"] {
                for (name, value) in inputs {
                    if case .array(let link) = value, link.count == 2, let target = link[0].stringValue, workflow[target] == nil {
                        return .failure(NodeError(node: id, classType: type, message: "input \(name) of node \(id) links to missing node \(target)"))
                    }
                }
            }
        }
        for node in workflow.values {
            let inputs = node["inputs"]
            switch node["class_type"]?.stringValue {
            case "EmptyLatentImage":
                parsed.width = inputs?["width"]?.integerValue.map { Int($0) } ?? parsed.width
                parsed.height = inputs?["height"]?.integerValue.map { Int($0) } ?? parsed.height
                parsed.batchSize = inputs?["batch_size"]?.integerValue.map { Int($0) } ?? parsed.batchSize
            case "KSampler", "KSamplerAdvanced":
                parsed.seed = inputs?["seed"]?.integerValue ?? inputs?["noise_seed"]?.integerValue ?? parsed.seed
                parsed.steps = inputs?["steps"]?.integerValue.map { Int($0) } ?? parsed.steps
                parsed.cfg = inputs?["cfg"]?.numberValue ?? parsed.cfg
                parsed.sampler = inputs?["sampler_name"]?.stringValue ?? parsed.sampler
                parsed.positive = text(of: inputs?["positive"], in: workflow) ?? parsed.positive
                parsed.negative = text(of: inputs?["negative"], in: workflow) ?? parsed.negative
            case "CheckpointLoaderSimple":
                parsed.checkpoint = inputs?["ckpt_name"]?.stringValue ?? parsed.checkpoint
            default: break
            }
        }
        guard (64...4096).contains(parsed.width), (64...4096).contains(parsed.height), (1...16).contains(parsed.batchSize),
            (1...500).contains(parsed.steps)
        else { return .failure(NodeError(node: "", classType: "", message: "image size, batch or steps out of range")) }
        return .success(parsed)
    }

    /// The `text` of the `CLIPTextEncode` node a `[node, output]` link points to.
    private static func text(of link: JSONValue?, in workflow: [String: JSONValue]) -> String? {
        guard case .array(let parts)? = link, let id = parts.first?.stringValue else { return nil }
        return workflow[id]?["inputs"]?["text"]?.stringValue
    }

    /// The emulator job this workflow amounts to.
    package func job(model: String) -> RuntimeJob {
        RuntimeJob(
            kind: .txt2img, prompt: positive, negativePrompt: negative, seed: max(0, seed), width: width, height: height, steps: steps,
            cfgScale: cfg, sampler: sampler, batchSize: batchSize, model: checkpoint.isEmpty ? model : checkpoint)
    }
}
