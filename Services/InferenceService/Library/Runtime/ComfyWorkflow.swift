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
        "VAEEncode", "SaveImage", "PreviewImage", "LoadImage", "LatentUpscale", "ImageScale", "LoraLoader",
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

extension ComfyWorkflow {
    /// `workflow` with the task's registered models in it: every `CheckpointLoaderSimple` loads
    /// `checkpoint` (when the task names a registered one), and `loras` become a chain of
    /// `LoraLoader` nodes (`sdq_lora_1`, …) after the first checkpoint loader, which everything
    /// that took the loader's model (output 0) or CLIP (output 1) now takes from the chain's end.
    package static func applying(checkpoint: String?, loras: [LoraFile], to workflow: [String: JSONValue])
        -> Result<[String: JSONValue], NodeError>
    {
        var nodes = workflow
        let loaders = nodes.keys.filter { nodes[$0]?["class_type"]?.stringValue == "CheckpointLoaderSimple" }.sorted()
        if let checkpoint {
            for id in loaders {
                guard case .object(var node)? = nodes[id] else { continue }
                var inputs = node["inputs"]?.objectValue ?? [:]
                inputs["ckpt_name"] = .string(checkpoint)
                node["inputs"] = .object(inputs)
                nodes[id] = .object(node)
            }
        }
        guard !loras.isEmpty else { return .success(nodes) }
        guard let source = loaders.first else {
            return .failure(NodeError(node: "", classType: "LoraLoader", message: "LoRAs need a CheckpointLoaderSimple in the workflow"))
        }
        var previous = source
        for (index, lora) in loras.enumerated() {
            let id = "sdq_lora_\(index + 1)"
            nodes[id] = .object([
                "class_type": .string("LoraLoader"),
                "inputs": .object([
                    "model": .array([.string(previous), .number(0)]), "clip": .array([.string(previous), .number(1)]),
                    "lora_name": .string(lora.fileName), "strength_model": .number(lora.weight), "strength_clip": .number(lora.weight),
                ]),
            ])
            previous = id
        }
        for (id, node) in nodes where !id.hasPrefix("sdq_lora_") {
            guard case .object(var object) = node, case .object(var inputs)? = object["inputs"] else { continue }
            var changed = false
            for (name, value) in inputs {
                guard case .array(let link) = value, link.count == 2, link[0].stringValue == source,
                    let output = link[1].integerValue, output == 0 || output == 1
                else { continue }
                inputs[name] = .array([.string(previous), .number(Double(output))])
                changed = true
            }
            if changed {
                object["inputs"] = .object(inputs)
                nodes[id] = .object(object)
            }
        }
        return .success(nodes)
    }
}

extension RuntimeJob {
    /// The job's ComfyUI workflow with its registered models applied
    /// (``ComfyWorkflow/applying(checkpoint:loras:to:)``).
    package func workflowNodes() throws(RuntimeError) -> [String: JSONValue] {
        guard let data = runtimeOptions, case .object(let nodes)? = try? JSONValue.parse(data) else {
            throw RuntimeError(code: "workflow_invalid", message: "the workflow is not a JSON object", retryable: false)
        }
        switch ComfyWorkflow.applying(checkpoint: checkpointFile, loras: loras, to: nodes) {
        case .success(let applied): return applied
        case .failure(let error): throw RuntimeError(code: "workflow_invalid", message: error.message, retryable: false)
        }
    }
}
