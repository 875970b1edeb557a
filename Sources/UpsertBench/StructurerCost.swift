import ContactDomain
import Foundation
import JSON

/// The metadata structurer's own cost: a typical 10-key `meta_data` object, as a Chilean
/// company's web chat sends it, structured against that company's six custom field definitions.
extension Bench {
    static let structurerDefinitions: [String: CustomFieldDefinition] = {
        let list: [(String, String?, CustomFieldType, [String])] = [
            ("company_name", "Empresa", .text, []), ("budget", "Presupuesto", .number, []), ("rut", nil, .text, []),
            ("visit_date", "Fecha de visita", .date, []), ("is_vip", nil, .boolean, []),
            ("plan", "Plan", .options, ["Básico", "Premium", "Empresas"]),
        ]
        var out: [String: CustomFieldDefinition] = [:]
        for (key, label, type, options) in list {
            out[key] = CustomFieldDefinition(id: UUID(), key: key, label: label, type: type, options: options)
        }
        return out
    }()

    static let structurerInput: [String: JSONValue] = [
        "Empresa": "Acme SpA", "Presupuesto": "$1.500.000", "R.U.T.": "12.345.678-5", "Fecha de visita": "15/03/2026",
        "¿Es VIP?": "Sí", "Plan": "premium", "Nombre": "Ana Torres", "Correo": "ana@example.com",
        "utm_source": "facebook", "page_views": 7,
    ]

    /// Microseconds per structured object: the median of `rounds` timed loops of 20,000.
    public static func structurerMicroseconds(rounds: Int = 5) -> Double {
        let structurer = RuleBasedStructurer()
        var samples: [Double] = []
        var fields = 0
        for _ in 0..<max(1, rounds) {
            let started = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<20_000 {
                fields &+= structurer.structure(structurerInput, definitions: structurerDefinitions).customFieldValues.count
            }
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - started) / 1_000 / 20_000)
        }
        // Six fields each time; checked so that the loop cannot be optimized away.
        precondition(fields == 6 * 20_000 * max(1, rounds), "the structurer's benchmark object lost a field")
        return median(samples)
    }
}
