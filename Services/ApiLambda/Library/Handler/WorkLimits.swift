import Foundation
import SDQPlatform

/// The limits on the work a task really asks of a GPU, after its runtime-native parts
/// (`runtime_options`, a ComfyUI `workflow`): no image larger than `max_width` × `max_height`, no
/// sampling pass longer than `max_steps`, at most two passes' worth of steps in all (a base and a
/// hires pass), no batch larger than `max_batch_size`, no A1111 script that multiplies the work.
/// An extras upscale's output depends on its input's size, known only to the worker: the
/// inference service checks it there (`InferenceWorker.extrasRefusal`, `limit_exceeded`).
///
/// Every figure is checked as a `Double` before it is used: nothing here converts an unbounded
/// client number to an integer.
///
/// A single field out of its range is `400 invalid_field` (the OpenAPI document says so); fields
/// each in range whose combination asks too much, and anything a workflow node asks, are
/// `422 limit_exceeded` (the document cannot express those rules), naming the field.
enum WorkLimits {
    /// The largest upscale factor accepted anywhere (hires fix, extras, workflow scale nodes).
    static let maxScale = 8.0

    /// A request whose parts are each valid but together ask more than the limits allow.
    static func exceeded(_ field: String, _ message: String) -> APIError {
        APIError(status: 422, code: "limit_exceeded", message: message, field: field)
    }

    // MARK: SD WebUI options

    /// Checks the A1111 fields that change how much is generated: hires fix (`enable_hr`,
    /// `hr_scale`, `hr_resize_x`/`_y`, `hr_second_pass_steps`, sized as A1111 sizes it), the
    /// extras upscaler (`upscaling_resize`, `upscaling_resize_w`/`_h`) and scripts (`script_name`,
    /// `script_args`: an X/Y/Z plot runs a grid of generations). The hires fields are checked
    /// whether or not `enable_hr` is set, since a runtime's defaults may turn it on.
    static func checkRuntimeOptions(_ options: [String: JSONValue], task: TaskSubmission, limits: RequestLimits) throws(APIError) {
        func number(_ name: String) throws(APIError) -> Double? {
            switch options[name] {
            case nil, .null?: return nil
            case .number(let value)? where value.isFinite: return value
            default: throw .invalid("runtime_options.\(name)", "\(name) must be a number")
            }
        }
        for name in ["script_name", "script_args"] where options[name] != nil && options[name] != .null {
            throw .invalid("runtime_options.\(name)", "scripts are not accepted: they run more generations than the task's limits allow")
        }
        if let flag = options["enable_hr"], flag != .null, flag.boolValue == nil {
            throw .invalid("runtime_options.enable_hr", "enable_hr must be a boolean")
        }
        let scale = try number("hr_scale") ?? 2
        guard scale >= 1, scale <= maxScale else { throw .invalid("runtime_options.hr_scale", "hr_scale must be 1...\(Int(maxScale))") }
        let resizeX = try number("hr_resize_x") ?? 0
        let resizeY = try number("hr_resize_y") ?? 0
        guard resizeX >= 0, resizeX <= Double(limits.maxWidth) else {
            throw .invalid("runtime_options.hr_resize_x", "hr_resize_x must be 0...\(limits.maxWidth)")
        }
        guard resizeY >= 0, resizeY <= Double(limits.maxHeight) else {
            throw .invalid("runtime_options.hr_resize_y", "hr_resize_y must be 0...\(limits.maxHeight)")
        }
        let (width, height) = hiresTarget(
            width: Double(task.width), height: Double(task.height), scale: scale, resizeX: resizeX, resizeY: resizeY)
        // The hires pass runs when enable_hr is set; its size fields alone are judged too, as asked for.
        let asked = options["enable_hr"]?.boolValue == true || ["hr_scale", "hr_resize_x", "hr_resize_y"].contains { options[$0] != nil && options[$0] != .null }
        if asked, width > Double(limits.maxWidth) || height > Double(limits.maxHeight) {
            let field = resizeX == 0 && resizeY == 0 ? "hr_scale" : (resizeY == 0 ? "hr_resize_x" : "hr_resize_y")
            throw exceeded(
                "runtime_options.\(field)",
                "hires fix would make a \(Self.text(width))×\(Self.text(height)) image, more than \(limits.maxWidth)×\(limits.maxHeight)")
        }
        if let steps = try number("hr_second_pass_steps"), steps < 0 || steps > Double(limits.maxSteps) {
            throw .invalid("runtime_options.hr_second_pass_steps", "hr_second_pass_steps must be 0...\(limits.maxSteps)")
        }
        if let resize = try number("upscaling_resize"), resize < 0 || resize > maxScale {
            throw .invalid("runtime_options.upscaling_resize", "upscaling_resize must be 0...\(Int(maxScale))")
        }
        for (name, maximum) in [("upscaling_resize_w", limits.maxWidth), ("upscaling_resize_h", limits.maxHeight)] {
            if let value = try number(name), value < 0 || value > Double(maximum) {
                throw .invalid("runtime_options.\(name)", "\(name) must be 0...\(maximum)")
            }
        }
    }

    /// The size A1111's hires pass renders (`StableDiffusionProcessingTxt2Img`): `hr_scale` times
    /// the size when neither resize is set; one resize and the other side by the aspect ratio;
    /// both, and the image is scaled to cover that box (then cropped) — the larger of the two
    /// aspect-preserving fits.
    static func hiresTarget(width: Double, height: Double, scale: Double, resizeX: Double, resizeY: Double) -> (Double, Double) {
        switch (resizeX > 0, resizeY > 0) {
        case (false, false): return (width * scale, height * scale)
        case (true, false): return (resizeX, resizeX * height / width)
        case (false, true): return (resizeY * width / height, resizeY)
        case (true, true):
            return width / height < resizeX / resizeY ? (resizeX, resizeX * height / width) : (resizeY * width / height, resizeY)
        }
    }

    private static func text(_ value: Double) -> String { value < 1e9 ? String(Int(value)) : String(format: "%.3g", value) }

    // MARK: ComfyUI workflows

    /// Inputs that set how much a node computes; each must be a plain number, or a link to a
    /// `Primitive*` node holding one (ComfyUI also takes numeric strings and `{"__value__": …}`,
    /// which would hide the figure from this check, so they are refused).
    static let workInputs: Set<String> = ["width", "height", "batch_size", "amount", "steps", "scale_by", "megapixels", "length"]

    /// Checks every node's size, batch and steps inputs, the size of every image the graph makes
    /// (following `LatentUpscaleBy` / `ImageScaleBy` back to the size they scale; a scale of an
    /// image whose size is unknown here, such as a loaded one, may not enlarge it), the pixels of
    /// `ImageScaleToTotalPixels`, and the steps of all sampler nodes together.
    static func checkWorkflow(_ nodes: [String: JSONValue], limits: RequestLimits) throws(APIError) {
        var totalSteps = 0.0
        for (id, node) in nodes.sorted(by: { $0.key < $1.key }) {
            guard case .object(let inputs)? = node["inputs"] else { continue }
            func field(_ name: String) -> String { "workflow.\(id).inputs.\(name)" }
            var values: [String: Double] = [:]
            for name in workInputs where inputs[name] != nil {
                values[name] = try number(inputs[name], in: nodes, field: field(name))
            }
            for (name, maximum) in [("width", limits.maxWidth), ("height", limits.maxHeight)] {
                if let value = values[name], value > Double(maximum) {
                    throw exceeded(field(name), "node \(id): \(name) must be at most \(maximum)")
                }
            }
            for name in ["batch_size", "amount"] {
                if let value = values[name], value > Double(limits.maxBatchSize) {
                    throw exceeded(field(name), "node \(id): \(name) must be at most \(limits.maxBatchSize)")
                }
            }
            if let length = values["length"], length > Double(limits.maxBatchSize) {
                throw exceeded(field("length"), "node \(id): length (frames) must be at most \(limits.maxBatchSize)")
            }
            if let steps = values["steps"] {
                guard steps <= Double(limits.maxSteps) else {
                    throw exceeded(field("steps"), "node \(id): steps must be at most \(limits.maxSteps)")
                }
                totalSteps += max(0, steps)
            }
            if let scale = values["scale_by"], scale > maxScale {
                throw exceeded(field("scale_by"), "node \(id): scale_by must be at most \(Int(maxScale))")
            }
            if let megapixels = values["megapixels"], megapixels * 1_000_000 > Double(limits.maxWidth * limits.maxHeight) {
                throw exceeded(field("megapixels"), "node \(id): megapixels must be at most \(Double(limits.maxWidth * limits.maxHeight) / 1_000_000)")
            }
            // The scale nodes make the sizes nothing above has seen.
            let scaling = ["LatentUpscaleBy", "ImageScaleBy"].contains(node["class_type"]?.stringValue ?? "")
            switch scaling ? size(of: id, in: nodes, depth: 0) : .unknown {
            case .known(let width, let height) where width > Double(limits.maxWidth) || height > Double(limits.maxHeight):
                throw exceeded(
                    field("scale_by"),
                    "node \(id) makes a \(text(width))×\(text(height)) image, more than \(limits.maxWidth)×\(limits.maxHeight)")
            case .unknownScaledBy(let scale) where scale > 1:
                throw exceeded(field("scale_by"), "node \(id) enlarges an image whose size is not known before it runs")
            default: break
            }
        }
        guard totalSteps <= Double(2 * limits.maxSteps) else {
            throw exceeded("workflow", "the workflow's samplers take \(text(totalSteps)) steps in all, more than \(2 * limits.maxSteps)")
        }
    }

    /// A work input as a number: a finite JSON number, or a link `[node, 0]` to a `Primitive*`
    /// node whose `value` is one.
    private static func number(_ value: JSONValue?, in nodes: [String: JSONValue], field: String) throws(APIError) -> Double {
        switch value {
        case .number(let number)? where number.isFinite: return number
        case .array(let link)? where link.count == 2:
            guard let source = link[0].stringValue, let node = nodes[source], node["class_type"]?.stringValue?.hasPrefix("Primitive") == true,
                case .number(let number)? = node["inputs"]?["value"], number.isFinite
            else { throw exceeded(field, "\(field) must be a number or a link to a Primitive node holding one") }
            return number
        default: throw exceeded(field, "\(field) must be a number")
        }
    }

    private enum Size {
        case known(Double, Double)
        /// A scale applied to something whose size is not known here.
        case unknownScaledBy(Double)
        case unknown
    }

    /// The pixel size of what node `id` outputs, for the core nodes that set or change it.
    private static func size(of id: String, in nodes: [String: JSONValue], depth: Int) -> Size {
        guard depth < 64, let node = nodes[id], let type = node["class_type"]?.stringValue else { return .unknown }
        let inputs = node["inputs"]
        func value(_ name: String) -> Double? {
            try? number(inputs?[name], in: nodes, field: name)
        }
        func upstream(_ name: String) -> Size {
            guard case .array(let link)? = inputs?[name], let source = link.first?.stringValue else { return .unknown }
            return size(of: source, in: nodes, depth: depth + 1)
        }
        switch type {
        case "EmptyLatentImage", "LatentUpscale", "ImageScale":
            guard let width = value("width"), let height = value("height") else { return .unknown }
            return .known(width, height)
        case "LatentUpscaleBy", "ImageScaleBy":
            guard let scale = value("scale_by") else { return .unknown }
            if case .known(let width, let height) = upstream(type == "LatentUpscaleBy" ? "samples" : "image") {
                return .known(width * scale, height * scale)
            }
            return .unknownScaledBy(scale)
        case "KSampler", "KSamplerAdvanced": return upstream("latent_image")
        case "VAEDecode": return upstream("samples")
        case "VAEEncode": return upstream("pixels")
        default: return .unknown
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
