/// Names by which CRM exports, chat widgets and form builders in Spanish, Portuguese and
/// English call a handful of common customer fields (docs/rules.md section 6, rule 23).
///
/// A custom field definition whose key or label is one of a concept's names can be filled from
/// a metadata key that is any other of its names; such a synonym match counts only when no
/// definition's own key or label matches the metadata key, and only when exactly one
/// definition belongs to the concept. Names are written as people write them; they are
/// compared in ``KeyForm`` (accents, case, punctuation, joining words and plurals ignored), and
/// a test checks that no name belongs to two concepts.
enum FieldSynonyms {
    struct Concept: Sendable {
        let name: String
        let names: [String]
    }

    static let concepts: [Concept] = [
        // Spanish empresa, compañía, razón social (a company's registered name), negocio;
        // Portuguese empresa, companhia, razão social; English company, business, organization.
        Concept(name: "company", names: [
            "company", "company name", "business", "business name", "organization", "organisation",
            "empresa", "nombre de la empresa", "nombre empresa", "compañía", "razón social", "negocio",
            "organización", "companhia", "nome da empresa", "razão social", "organização",
        ]),
        // Spanish presupuesto, Portuguese orçamento.
        Concept(name: "budget", names: ["budget", "presupuesto", "orçamento"]),
        // Spanish cumpleaños and fecha de nacimiento; Portuguese aniversário (Brazil's everyday
        // word for a birthday; in Spanish "aniversario" is an anniversary, so an organization
        // whose own field is called that keeps it: own keys and labels come before synonyms)
        // and data de nascimento.
        Concept(name: "birthday", names: [
            "birthday", "birth date", "date of birth", "dob", "cumpleaños", "fecha de nacimiento",
            "fecha de cumpleaños", "aniversário", "data de nascimento", "nascimento",
        ]),
        // The taxpayer number that persons and companies alike get from their country's tax
        // authority: Chile's RUT (Rol Único Tributario, SII), Peru's, Ecuador's and Paraguay's
        // RUC (Registro Único de Contribuyentes), Argentina's CUIT (Clave Única de
        // Identificación Tributaria), Mexico's RFC (Registro Federal de Contribuyentes, SAT),
        // Colombia's, Bolivia's and Guatemala's NIT (Número de Identificación Tributaria),
        // Venezuela's RIF, Spain's and Portugal's NIF.
        Concept(name: "tax id", names: [
            "tax id", "tax number", "taxpayer id", "tin", "rut", "ruc", "cuit", "rfc", "nit", "rif", "nif",
            "identificación tributaria", "número de identificación tributaria",
        ]),
        // Brazil gives persons and companies different numbers, so neither is the other's
        // synonym: the CPF (Cadastro de Pessoas Físicas) and the CNPJ (Cadastro Nacional da
        // Pessoa Jurídica).
        Concept(name: "cpf", names: ["cpf", "cadastro de pessoas físicas"]),
        Concept(name: "cnpj", names: ["cnpj", "cadastro nacional da pessoa jurídica"]),
        // Identity documents that are not tax numbers: Argentina's and Peru's DNI, the cédula
        // (de identidad, de ciudadanía) of Colombia, Ecuador, Uruguay, Venezuela and others,
        // Brazil's RG, Mexico's CURP.
        Concept(name: "national id", names: [
            "national id", "id number", "identity document", "dni", "cédula", "cédula de identidad",
            "cédula de ciudadanía", "documento de identidad", "rg", "curp",
        ]),
        // Spanish ciudad, localidad; Portuguese cidade, município (Brazil's city-level unit).
        Concept(name: "city", names: ["city", "town", "ciudad", "localidad", "cidade", "município"]),
        // Spanish and Portuguese país.
        Concept(name: "country", names: ["country", "país"]),
        // Spanish provincia, región; Brazil's UF (unidade federativa, the state). "Estado" is
        // left out: in Spanish it is as often a status as a state.
        Concept(name: "region", names: ["state", "province", "region", "provincia", "región", "uf"]),
        // Spanish dirección, domicilio; Portuguese endereço.
        Concept(name: "address", names: ["address", "street address", "dirección", "domicilio", "endereço"]),
        // Spanish código postal; Brazil's CEP (Código de Endereçamento Postal).
        Concept(name: "postal code", names: ["zip", "zip code", "postal code", "postcode", "código postal", "cep"]),
        // Spanish and Portuguese cargo, Spanish puesto: a person's position in a company.
        Concept(name: "job title", names: ["job title", "cargo", "puesto"]),
        // Spanish sitio web, página web; Portuguese site.
        Concept(name: "website", names: ["website", "web site", "sitio web", "página web", "site"]),
        // Spanish género and sexo; Portuguese gênero and sexo.
        Concept(name: "gender", names: ["gender", "sex", "género", "sexo", "gênero"]),
        // Spanish industria, sector, rubro (line of business); Portuguese setor, ramo.
        Concept(name: "industry", names: ["industry", "sector", "industria", "rubro", "setor", "ramo"]),
        // Where a lead came from: Spanish origen, fuente; Portuguese origem.
        Concept(name: "lead source", names: ["lead source", "source", "origen", "fuente", "origem"]),
        // Spanish notas, observaciones, comentarios; Portuguese observações, comentários.
        Concept(name: "notes", names: ["notes", "comments", "notas", "observaciones", "comentarios", "observações", "comentários"]),
        // Spanish and Portuguese idioma.
        Concept(name: "language", names: ["language", "preferred language", "idioma", "idioma preferido"]),
        // Spanish edad, Portuguese idade.
        Concept(name: "age", names: ["age", "edad", "idade"]),
        // Spanish profesión, ocupación; Portuguese profissão, ocupação.
        Concept(name: "occupation", names: ["occupation", "profession", "profesión", "ocupación", "profissão", "ocupação"]),
        // Company size: Spanish empleados, Portuguese funcionários.
        Concept(name: "employees", names: [
            "employees", "number of employees", "employee count", "empleados", "número de empleados", "funcionários",
            "número de funcionários",
        ]),
    ]

    /// Every variant of every name's form, to its concept's index in ``concepts``.
    static let conceptOfForm: [String: Int] = {
        var table: [String: Int] = [:]
        for (index, concept) in concepts.enumerated() {
            for name in concept.names {
                for variant in KeyForm.variants(KeyForm.compact(name)) { table[variant] = index }
            }
        }
        return table
    }()

    /// The concepts whose names include `form` (or one of its singulars).
    static func concepts(of form: String) -> Set<Int> {
        var out: Set<Int> = []
        for variant in KeyForm.variants(form) {
            if let concept = conceptOfForm[variant] { out.insert(concept) }
        }
        return out
    }
}
