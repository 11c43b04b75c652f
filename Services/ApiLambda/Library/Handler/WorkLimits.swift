import Foundation
import SDQPlatform

/// The limits on the work a task really asks of a GPU, after its runtime-native parts
/// (`runtime_options`, a ComfyUI `workflow`): no image larger than `max_width` × `max_height`, no
/// sampling pass longer than `max_steps`, at most two passes' worth of steps in all (a base and a
/// hires pass), no batch larger than `max_batch_size`.
enum WorkLimits {
    // MARK: SD WebUI options

    /// Checks the A1111 fields that change how much is generated: hires fix (`enable_hr`,
    /// `hr_scale`, `hr_resize_x`/`_y`, `hr_second_pass_steps`) and the extras upscaler
    /// (`upscaling_resize`, `upscaling_resize_w`/`_h`). They are checked whether or not
    /// `enable_hr` is set, since a runtime's defaults may turn it on.
    static func checkRuntimeOptions(_ options: [String: JSONValue], task: TaskSubmission, limits: RequestLimits) throws(APIError) {
        func number(_ name: String) throws(APIError) -> Double? {
            switch options[name] {
            case nil, .null?: return nil
            case .number(let value)? where value.isFinite: return value
            default: throw .invalid("runtime_options.\(name)", "\(name) must be a number")
            }
        }
        if let flag = options["enable_hr"], flag != .null, flag.boolValue == nil {
            throw .invalid("runtime_options.enable_hr", "enable_hr must be a boolean")
        }
        let hires = options["enable_hr"]?.boolValue ?? false
        let scale = try number("hr_scale") ?? 2
        guard scale >= 1 else { throw .invalid("runtime_options.hr_scale", "hr_scale must be at least 1") }
        for (name, base, maximum) in [("hr_resize_x", task.width, limits.maxWidth), ("hr_resize_y", task.height, limits.maxHeight)] {
            let explicit = try number(name) ?? 0
            guard explicit >= 0, explicit <= Double(maximum) else {
                throw .invalid("runtime_options.\(name)", "\(name) must be 0...\(maximum)")
            }
            // 0 means "scale by hr_scale".
            let effective = explicit > 0 ? explicit : Double(base) * scale
            if hires || options["hr_scale"] != nil, explicit == 0, effective > Double(maximum) {
                throw .invalid(
                    "runtime_options.hr_scale",
                    "hr_scale \(scale) makes the image \(Int(effective)) px \(name == "hr_resize_x" ? "wide" : "high"), more than \(maximum)")
            }
        }
        if let steps = try number("hr_second_pass_steps"), steps < 0 || steps > Double(limits.maxSteps) {
            throw .invalid("runtime_options.hr_second_pass_steps", "hr_second_pass_steps must be 0...\(limits.maxSteps)")
        }
        if let resize = try number("upscaling_resize"), resize < 0 || resize > 8 {
            throw .invalid("runtime_options.upscaling_resize", "upscaling_resize must be 0...8")
        }
        for (name, maximum) in [("upscaling_resize_w", limits.maxWidth), ("upscaling_resize_h", limits.maxHeight)] {
            if let value = try number(name), value < 0 || value > Double(maximum) {
                throw .invalid("runtime_options.\(name)", "\(name) must be 0...\(maximum)")
            }
        }
    }

    // MARK: ComfyUI workflows

    /// Checks every node's size, batch and steps inputs, the size of every image the graph makes
    /// (following `LatentUpscaleBy` / `ImageScaleBy` back to the size they scale), and the steps
    /// of all sampler nodes together.
    static func checkWorkflow(_ nodes: [String: JSONValue], limits: RequestLimits) throws(APIError) {
        var totalSteps = 0
        for (id, node) in nodes.sorted(by: { $0.key < $1.key }) {
            guard case .object(let inputs)? = node["inputs"] else { continue }
            func field(_ name: String) -> String { "workflow.\(id).inputs.\(name)" }
            for (name, maximum) in [("width", limits.maxWidth), ("height", limits.maxHeight)] {
                if let value = inputs[name]?.numberValue, value > Double(maximum) {
                    throw .invalid(field(name), "node \(id): \(name) must be at most \(maximum)")
                }
            }
            for name in ["batch_size", "amount"] {
                if let value = inputs[name]?.numberValue, value > Double(limits.maxBatchSize) {
                    throw .invalid(field(name), "node \(id): \(name) must be at most \(limits.maxBatchSize)")
                }
            }
            if let steps = inputs["steps"]?.numberValue {
                guard steps <= Double(limits.maxSteps) else {
                    throw .invalid(field("steps"), "node \(id): steps must be at most \(limits.maxSteps)")
                }
                totalSteps += Int(max(0, steps))
            }
            if let (width, height) = size(of: id, in: nodes, depth: 0),
                width > Double(limits.maxWidth) || height > Double(limits.maxHeight)
            {
                throw .invalid(
                    field("scale_by"), "node \(id) makes a \(Int(width))×\(Int(height)) image, more than \(limits.maxWidth)×\(limits.maxHeight)")
            }
        }
        guard totalSteps <= 2 * limits.maxSteps else {
            throw .invalid("workflow", "the workflow's samplers take \(totalSteps) steps in all, more than \(2 * limits.maxSteps)")
        }
    }

    /// The pixel size of what node `id` outputs, for the core nodes that set or change it; nil
    /// when unknown. Links are `[node id, output index]`.
    private static func size(of id: String, in nodes: [String: JSONValue], depth: Int) -> (Double, Double)? {
        guard depth < 64, let node = nodes[id], let type = node["class_type"]?.stringValue else { return nil }
        let inputs = node["inputs"]
        func upstream(_ name: String) -> (Double, Double)? {
            guard case .array(let link)? = inputs?[name], let source = link.first?.stringValue else { return nil }
            return size(of: source, in: nodes, depth: depth + 1)
        }
        switch type {
        case "EmptyLatentImage", "LatentUpscale", "ImageScale":
            guard let width = inputs?["width"]?.numberValue, let height = inputs?["height"]?.numberValue else { return nil }
            return (width, height)
        case "LatentUpscaleBy", "ImageScaleBy":
            guard let scale = inputs?["scale_by"]?.numberValue,
                let (width, height) = upstream(type == "LatentUpscaleBy" ? "samples" : "image")
            else { return nil }
            return (width * scale, height * scale)
        case "KSampler", "KSamplerAdvanced": return upstream("latent_image")
        case "VAEDecode": return upstream("samples")
        case "VAEEncode": return upstream("pixels")
        default: return nil
        }
    }
}

extension JSONValue {
    /// The value as a boolean; nil for anything else.
    var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }
}
